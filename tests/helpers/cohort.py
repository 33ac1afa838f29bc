"""Helpers to build small simulated cohorts, drive the CLI and read what it wrote, shared by the pipeline tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

FAST = {
    "cnn": {"epochs": 2, "n_permutations": 1, "kernel_sizes": [3, 5], "channels": [4, 4]},
    "baselines": {"n_permutations": 3},
    "evaluation": {"kfold_splits": 2, "n_bootstrap": 50, "chance_permutations": 50, "matchings": 1},
    "tuning": {"mode": "off"},  # 4 cages leave no inner cage folds of both sexes; see test_training.py
}
"""Training settings that only exercise the stages (accuracy is tested in test_training.py)."""

TRAINING = {
    "cnn": {"epochs": 30, "n_permutations": 0},
    "baselines": {"n_permutations": 49},
    "evaluation": {"kfold_splits": 6, "n_bootstrap": 500, "chance_permutations": 500},
    "tuning": {"mode": "off"},
}
"""Training settings under which the models' accuracies are tested (:func:`simulated_cohort`)."""

PLANTED_EXPERIMENT = "planted-cohort"
"""The MLflow experiment of conftest's ``planted`` cohort."""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([BIN / "lmt-stereotype", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def small_params(folder: Path, n_cages: int, sections: dict | None = None, **effects: float) -> Path:
    """The project's params.yaml with ``n_cages`` cages, ``effects`` and section overrides."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["n_cages"] = n_cages
    raw["simulate"]["effects"].update(effects)
    _merge(raw, sections or {})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _merge(into: dict, changes: dict) -> None:
    """Nested keys of ``changes`` replace those of ``into``; the rest of ``into`` stays."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def simulated_cohort(
    tmp_path_factory, name: str, simulate: dict, sections: dict | None = None, **effects: float
) -> Path:
    """8 cages (4 male, 4 female), each recorded juvenile and adult: the paper's design, smaller;
    simulated and preprocessed through the CLI under :data:`TRAINING` (and ``sections``)."""
    folder = tmp_path_factory.mktemp(name)
    small_params(folder, n_cages=8, sections={**TRAINING, "simulate": simulate, **(sections or {})}, **effects)
    cli("simulate", cwd=folder)
    cli("preprocess", cwd=folder)
    return folder


def metrics(folder: Path, model: str) -> dict:
    """``reports/<model>.json`` of a cohort folder (or of a reports folder itself)."""
    folder = folder / "reports" if (folder / "reports").is_dir() else folder
    return json.loads((folder / f"{model}.json").read_text())


def tiny_cohort(n_cages: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cages of 8 recordings (4 mice x 2 ages), half the cages male, with a planted quadrant per class."""
    rng = np.random.default_rng(0)
    cages = np.repeat([f"c{c}" for c in range(n_cages)], 8)
    female = np.repeat(np.arange(n_cages) >= n_cages // 2, 8)
    y = 2 * female.astype(int) + np.tile([0, 1], 4 * n_cages)
    X = rng.poisson(0.3, size=(len(y), 2, 10, 10)).astype(np.float32)
    for k, label in enumerate(y):
        r, c = divmod(label, 2)
        X[k, :, 5 * r : 5 * r + 5, 5 * c : 5 * c + 5] += 2
    return X, y, cages


TINY_CNN = {"channels": [4, 4], "kernel_sizes": [3, 5], "epochs": 20, "lr": 0.01, "batch_size": 4, "threads": 1}


def tiny_project(folder: Path, sections: dict | None = None) -> Path:
    """A project folder whose stacks are :func:`tiny_cohort` (no simulation needed) and a tiny CNN,
    evaluated by one matching of balanced folds (3 folds of a male and a female cage)."""
    from lmt_stereotype.histograms import Stacks
    from lmt_stereotype.labels import CLASSES

    X, y, cages = tiny_cohort()
    n = len(y)
    ids = [f"r{k:02d}" for k in range(n)]
    labels, animals = np.array(CLASSES)[y], np.arange(n) % 4 + 1
    Stacks(X, labels, cages, np.array(ids), animals, np.array(ids), 60.0, np.full(n, 10.0), 3600.0).save(
        folder / "data/processed/stacks.npz"
    )
    evaluation = {"schemes": ["balanced"], "matchings": 1, "n_bootstrap": 100, "chance_permutations": 100}
    defaults = {"cnn": TINY_CNN, "evaluation": evaluation}
    return small_params(folder, n_cages=len(np.unique(cages)), sections={**defaults, **(sections or {})})
