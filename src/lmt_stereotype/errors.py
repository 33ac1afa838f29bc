"""The one exception type users see: bad input, named by file and problem.

The CLI turns it into a one-line message and exit code 2 (no traceback unless
``--debug``); anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file (recording, manifest, parameters) that cannot be used as given."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
