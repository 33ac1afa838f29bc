"""Helpers to build small simulated cohorts, drive the CLI and read what it wrote, shared by the pipeline tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

if TYPE_CHECKING:
    from lmt_stereotype.histograms import Stacks

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


def simulated_cohort(folders, name: str, simulate: dict, sections: dict | None = None, **effects: float) -> Path:
    """8 cages (4 male, 4 female), each recorded juvenile and adult: the paper's design, smaller;
    simulated and preprocessed through the CLI under :data:`TRAINING` (and ``sections``), in a
    folder from ``folders.mktemp`` (pytest's ``tmp_path_factory`` or conftest's ``module_tmp``)."""
    folder = folders.mktemp(name)
    small_params(folder, n_cages=8, sections={**TRAINING, "simulate": simulate, **(sections or {})}, **effects)
    cli("simulate", cwd=folder)
    cli("preprocess", cwd=folder)
    return folder


def metrics(folder: Path, model: str) -> dict:
    """``reports/<model>.json`` of a cohort folder (or of a reports folder itself)."""
    folder = folder / "reports" if (folder / "reports").is_dir() else folder
    return json.loads((folder / f"{model}.json").read_text())


def tiny_cohort(n_cages: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cages of 8 recordings (4 mice x 2 ages), half the cages male, with a planted quadrant per class.

    ``y`` holds the paper's class indices (:data:`~lmt_stereotype.labels.PAPER_CLASSES`: AM, JM, AF, JF)."""
    rng = np.random.default_rng(0)
    cages = np.repeat([f"c{c}" for c in range(n_cages)], 8)
    female = np.repeat(np.arange(n_cages) >= n_cages // 2, 8)
    y = 2 * female.astype(int) + np.tile([0, 1], 4 * n_cages)
    X = rng.poisson(0.3, size=(len(y), 2, 10, 10)).astype(np.float32)
    for k, label in enumerate(y):
        r, c = divmod(label, 2)
        X[k, :, 5 * r : 5 * r + 5, 5 * c : 5 * c + 5] += 2
    return X, y, cages


def tiny_stacks(n_cages: int = 6, column: str = "class") -> Stacks:
    """:func:`tiny_cohort` as the stacks ``histograms`` would write for ``target.column`` (``class``, ``sex``
    or ``age``), with its sex and age as grouping columns; 60-s intervals, from 10:00."""
    from lmt_stereotype.histograms import Stacks
    from lmt_stereotype.labels import PAPER_CLASSES, Target

    X, y, cages = tiny_cohort(n_cages)
    n = len(y)
    paper = Target("class", PAPER_CLASSES)
    groups = {factor: levels.astype(str) for factor, levels in paper.factor_levels(y).items()}
    labels = paper.names(y).astype(str) if column == "class" else groups[column]
    target = Target.of(column, labels)
    ids = np.array([f"r{k:02d}" for k in range(n)])
    return Stacks(
        X=X,
        label=labels,
        classes=target.classes,
        target_column=target.column,
        groups=groups,
        cage=cages,
        recording=ids,
        animal_id=np.arange(n) % 4 + 1,
        sample=ids,
        identity=np.char.add("id-", ids),
        interval_s=60.0,
        start_hour=np.full(n, 10.0),
        seconds_per_hour=3600.0,
    )


TINY_CNN = {"channels": [4, 4], "kernel_sizes": [3, 5], "epochs": 20, "lr": 0.01, "batch_size": 4, "threads": 1}


def tiny_project(folder: Path, sections: dict | None = None, column: str = "class") -> Path:
    """A project folder whose stacks are :func:`tiny_stacks` for ``column`` (no simulation needed) and a
    tiny CNN, evaluated by one matching of balanced folds (3 folds of a male and a female cage)."""
    stacks = tiny_stacks(column=column)
    stacks.save(folder / "data/processed/stacks.npz")
    evaluation = {"schemes": ["balanced"], "matchings": 1, "n_bootstrap": 100, "chance_permutations": 100}
    defaults = {"cnn": TINY_CNN, "evaluation": evaluation, "target": {"column": column}}
    return small_params(folder, n_cages=len(np.unique(stacks.cage)), sections={**defaults, **(sections or {})})
