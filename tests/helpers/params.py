"""The demo's parameters (params.yaml, the one source of defaults) and validated variations of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from lmt_stereotype.config import load_params

DEMO = load_params(Path(__file__).resolve().parents[2] / "params.yaml")

S = TypeVar("S")


def varied(section: S, **changes: Any) -> S:
    """``section`` with ``changes``, validated as a parameter file would be."""
    return type(section).model_validate({**section.model_dump(), **changes})
