"""A cohort with nothing to learn but the cage: balanced folds stay at chance, leave-one-cage-out
leans against the held-out cage's sex, and the stratified K-fold leaks cage-mates.

8 single-sex cages (4 male, 4 female), every class effect off, strong cage fingerprints: the
design in which leave-one-cage-out anti-learns (an independently written cohort of this design
scored 0.000). Its own file so that the test suite's two workers (pytest-xdist, one file each)
share the simulated cohorts evenly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.cohort import cli, metrics, simulated_cohort

pytestmark = pytest.mark.slow  # simulates and trains an 8-cage cohort through the CLI

MODELS = ("cnn", "knn", "svm")


@pytest.fixture(scope="module")
def fingerprints(module_tmp) -> Path:
    """Seed 2 is one whose cage fingerprints pull the SVM's leave-one-cage-out folds towards the
    other sex (the bias shows in some cohorts and some models, never in the balanced folds:
    seeds 2, 3 and 4 at cage variability 1.5 and 3.0 were tried, benchmarks/README.md)."""
    simulate = {"seed": 2, "cage_variability": 3.0, "mouse_variability": 0.1}
    folder = simulated_cohort(module_tmp, "fingerprints", simulate, strength=0.0)
    cli("train", cwd=folder)
    (folder / "baselines.log").write_text(cli("baselines", cwd=folder).stderr)
    return folder


def test_under_balanced_folds_no_model_is_below_chance_and_sex_stays_near_a_coin_flip(fingerprints):
    for model in MODELS:
        balanced = metrics(fingerprints, model)["balanced"]
        assert balanced["below_chance_p"] > 0.05, model
        assert 0.25 <= balanced["accuracy_sex"] <= 0.75, model
        assert balanced["accuracy"] < balanced["significance_threshold"], model  # nothing to learn but the cage


def test_under_leave_one_cage_out_the_documented_bias_shows_and_is_named(fingerprints):
    loco = {model: metrics(fingerprints, model)["loco"] for model in MODELS}
    balanced = {model: metrics(fingerprints, model)["balanced"] for model in MODELS}
    assert loco["svm"]["accuracy_sex"] < 0.25  # held-out cages called the other sex
    assert loco["svm"]["below_chance_p"] <= 0.05  # significantly below chance: a diagnosis, not a finding
    assert np.mean([loco[m]["accuracy_sex"] for m in MODELS]) < np.mean([balanced[m]["accuracy_sex"] for m in MODELS])
    said = (fingerprints / "baselines.log").read_text()  # what the user reads, in words
    assert "svm loco: accuracy" in said and "the scheme is biased on this cohort" in said
    assert "svm balanced: accuracy" in said and "biased" not in said.split("svm balanced:")[1].split("\n")[0]


def test_cage_fingerprints_leak_into_kfold_but_not_into_whole_cage_folds(fingerprints):
    knn = metrics(fingerprints, "knn")
    # cage-mates share their sex: with them in training, 1-NN "knows" the sex of almost every mouse
    assert knn["kfold"]["accuracy_sex"] > 0.9 > 0.7 > knn["balanced"]["accuracy_sex"]
    assert knn["kfold"]["accuracy"] > knn["balanced"]["accuracy"] + 0.1
    assert knn["balanced"]["permutation_p_value"] > 0.05


def test_the_null_cohorts_final_model_is_challenger_with_the_reason_recorded(fingerprints):
    final = json.loads((fingerprints / "reports/registered_model.json").read_text())
    assert final["alias"] == "challenger"
    assert final["reason"].startswith("not significantly above chance (cage-bootstrap interval")
