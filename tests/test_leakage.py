"""Cage fingerprints are not mistaken for sex and age: a cohort with nothing to learn but the cage.

Its own file so that the test suite's two workers (pytest-xdist, one file each) share the
simulated cohorts evenly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cohort import cli
from test_training import cohort, metrics


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory) -> Path:
    """6 cages with every class effect off but strong cage fingerprints: nothing to learn but the cage."""
    simulate = {"seed": 2, "cage_variability": 1.5, "mouse_variability": 0.1}
    folder = cohort(tmp_path_factory, "fingerprints", simulate, strength=0.0)
    cli("train", cwd=folder)
    cli("baselines", cwd=folder)
    return folder


def test_cage_fingerprints_leak_into_kfold_but_not_into_leave_one_cage_out(fingerprints):
    for model in ("cnn", "knn", "svm"):
        loco = metrics(fingerprints, model)["loco"]
        assert loco["accuracy"] < loco["significance_threshold"], model  # nothing to learn but the cage
    knn = metrics(fingerprints, "knn")
    # cage-mates share their sex: with them in training, 1-NN "knows" the sex of almost every mouse
    assert knn["kfold"]["accuracy_sex"] > 0.9 > 0.7 > knn["loco"]["accuracy_sex"]
    assert knn["kfold"]["accuracy"] > knn["loco"]["accuracy"] + 0.1
    assert knn["loco"]["permutation_p_value"] > 0.05
