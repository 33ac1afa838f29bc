"""Helpers to build small simulated cohorts and drive the CLI, shared by the pipeline tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([BIN / "lmt-stereotype", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def small_params(folder: Path, n_cages: int, sections: dict | None = None, **effects: float) -> Path:
    """The project's params.yaml with ``n_cages`` cages, ``effects`` and section overrides."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["n_cages"] = n_cages
    raw["simulate"]["effects"].update(effects)
    for section, values in (sections or {}).items():
        raw[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
