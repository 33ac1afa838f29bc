"""How a stage talks to the person running it."""

from __future__ import annotations

import os
import sys


def show_progress() -> bool:
    """Progress bars only for a person at a terminal, never in CI logs."""
    return sys.stderr.isatty() and not os.environ.get("CI")
