"""The exceptions users see: a problem named by what it concerns, and the exit code it gets.

The CLI turns each into a one-line message on stderr and its ``exit_code`` (no
traceback unless ``--debug``); anything else escaping is a bug and keeps its traceback.

==============  ====  ==========================================================
exception       exit  when
==============  ====  ==========================================================
InputError      2     bad input: a recording, the manifest, params.yaml (the file
                      and, where there is one, the row or key)
OutputError     3     an output that cannot be written: disk full, a file-size
                      limit, a read-only or forbidden folder (the previous output
                      is kept, no temporary file is left behind)
ServiceError    3     a service the run needs cannot be reached: the MLflow
                      tracking server (checked once, up front, in seconds)
(Ctrl-C, TERM)  130   interrupted: the stage's MLflow run ends KILLED, nothing
                      half-written is kept, a re-run completes it
==============  ====  ==========================================================

All of them survive pickling, so an error raised in a worker process reaches the parent
as itself (an exception whose constructor takes two arguments does not, by default).
"""

from __future__ import annotations

from pathlib import Path


class ProblemError(Exception):
    """Base of the errors the CLI reports in one line: ``<subject>: <problem>``."""

    exit_code = 1

    def __init__(self, subject: object, problem: str):
        self.problem = problem
        super().__init__(f"{subject}: {problem}")

    def __reduce__(self):
        return type(self), self._init_args()

    def _init_args(self) -> tuple:  # pragma: no cover - every subclass says what it was built from
        raise NotImplementedError


class _PathError(ProblemError):
    """A problem named by the file or folder it concerns."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(self.path, problem)

    def _init_args(self) -> tuple:
        return (self.path, self.problem)


class InputError(_PathError):
    """A file (recording, manifest, parameters) that cannot be used as given."""

    exit_code = 2


class OutputError(_PathError):
    """An output that cannot be written (no space left, file too large, read-only, permission)."""

    exit_code = 3


class ServiceError(ProblemError):
    """A service the run needs (the MLflow tracking server) that cannot be reached or used."""

    exit_code = 3

    def __init__(self, address: str, problem: str):
        self.address = address
        super().__init__(address, problem)

    def _init_args(self) -> tuple:
        return (self.address, self.problem)
