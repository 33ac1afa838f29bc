"""`lmt-stereotype validate`: a registered model scored on a labelled cohort recorded elsewhere,
without retraining, as cross-validation scores it; a cohort it was trained on is refused.

The registered model comes from the trained cohort ``planted`` (conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.cohort import BIN, cli

from lmt_stereotype.config import load_params
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.validation import external_metrics

pytestmark = pytest.mark.slow  # reads the trained cohort `planted` and simulates a second one


def registered(folder: Path) -> str:
    return json.loads((folder / "reports/registered_model.json").read_text())["model_uri"]


def validate(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "lmt-stereotype", "validate", *args], cwd=folder, capture_output=True, text=True)


@pytest.fixture(scope="module")
def second(planted) -> Path:
    """Another cohort of 4 cages (another seed: other mice, cage fingerprints, clocks), validated once."""
    cli("simulate", "--seed", "12", "--cages", "4", "--out", "data/external/second", cwd=planted)
    proc = validate(planted, "data/external/second/manifest.csv", "--model", registered(planted))
    assert proc.returncode == 0, proc.stderr
    return planted / "reports/external/second"


def test_validate_scores_the_loaded_models_predictions_as_cross_validation_scores_its_own(planted, second):
    metrics = json.loads((second / "metrics.json").read_text())
    stacks = Stacks.load(second / "stacks.npz")
    assert len(stacks.label) == 32 and len(set(stacks.cage)) == 4 and set(stacks.label) == {"AM", "JM", "AF", "JF"}
    model = mlflow.pyfunc.load_model(registered(planted))
    proba = model.predict(stacks.X)[[f"p_{c}" for c in stacks.classes]].to_numpy()
    by_hand, _ = external_metrics(stacks, proba, load_params(planted / "params.yaml").evaluation)
    assert metrics == pytest.approx(by_hand, nan_ok=True)
    cross_validated = json.loads((planted / "reports/cnn.json").read_text())["balanced"]
    assert set(metrics) - set(cross_validated) == set()  # the same names
    assert metrics["chance_level"] == 0.25 and metrics["n_recordings"] == 32 and metrics["n_cages"] == 4
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]
    assert metrics["accuracy_binomial_low"] <= metrics["accuracy"] <= metrics["accuracy_binomial_high"]
    assert 0 < metrics["permutation_p_value"] <= 1 and metrics["n_permutations"] > 0
    predictions = pd.read_csv(second / "predictions.csv")
    assert (predictions["predicted"] == np.array(stacks.classes)[proba.argmax(axis=1)]).all()
    confusion = json.loads((second / "confusion.json").read_text())
    assert np.trace(confusion["counts"]) == round(metrics["accuracy"] * 32)
    assert np.sum(confusion["cross_validated"]) == 64  # the model's own, beside it: 8 cages x 8 recordings


def test_validate_logs_a_run_linked_to_the_model_version_and_tags_the_version(planted, second):
    name, version = registered(planted).removeprefix("models:/").split("/")
    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    metrics = json.loads((second / "metrics.json").read_text())
    assert float(tags["external.second.accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-4)
    assert tags["external.second.n_recordings"] == "32"
    run = mlflow.get_run(tags["external.second.run_id"])
    assert run.data.tags["stage"] == "validate" and run.data.tags["registered_version"] == version
    assert run.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])


def test_a_cohort_holding_a_recording_the_model_was_trained_on_is_refused_in_one_line(planted, second, tmp_path):
    """Compared by identity: a renamed copy of a training recording is still that recording."""
    shutil.copy(planted / "data/raw/cage03_adult.sqlite", tmp_path / "renamed.sqlite")
    shutil.copy(planted / "data/raw/simulation.json", tmp_path)
    (tmp_path / "manifest.csv").write_text("recording,animal,cage,sex,age\nrenamed.sqlite,1,c1,M,adult\n")
    proc = validate(planted, str(tmp_path / "manifest.csv"), "--model", registered(planted))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "1 of its 1 recordings were used to train the model (renamed.sqlite)" in proc.stderr


def test_a_missing_recording_of_the_manifest_is_the_usual_error(planted, tmp_path):
    (tmp_path / "manifest.csv").write_text("recording,animal,cage,sex,age\nmissing.sqlite,1,c1,M,adult\n")
    proc = validate(planted, str(tmp_path / "manifest.csv"), "--model", registered(planted))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "row 2: recording not found: missing.sqlite" in proc.stderr
