"""The models on simulated cohorts, through the CLI: planted effects are found, cage
fingerprints are not mistaken for them, and MLflow holds comparable runs.

The trained cohort these tests read (``planted``) is a fixture of conftest.py, shared with
test_predict.py and test_report.py."""

from __future__ import annotations

import json
import os
import subprocess

import mlflow
import numpy as np
import pytest
import yaml
from helpers.cohort import BIN, PLANTED_EXPERIMENT, cli, metrics, small_params

from lmt_stereotype.evaluation import permutation_p_value

pytestmark = pytest.mark.slow  # trains the 8-cage cohort `planted` through the CLI


def test_the_cnn_beats_chance_under_balanced_folds_on_moderate_effects_in_8_cages(planted):
    balanced = metrics(planted, "cnn")["balanced"]
    assert balanced["chance_level"] == 0.25 and balanced["n_recordings"] == 64 and balanced["n_cages"] == 8
    assert balanced["accuracy"] > balanced["significance_threshold"] > balanced["chance_level"]
    assert balanced["accuracy_ci_low"] > balanced["chance_level"]  # the champion gate of a tuned CNN
    assert balanced["below_chance_p"] > 0.5


def test_the_scheme_order_is_balanced_then_loco_then_kfold(planted):
    for model in ("cnn", "knn", "svm"):
        assert list(metrics(planted, model)) == ["balanced", "loco", "kfold"]  # dvc metrics show's order too


def test_the_baselines_p_value_comes_from_design_respecting_permutations(planted):
    for model in ("knn", "svm"):
        for scheme in ("balanced", "loco"):
            m = metrics(planted, model)[scheme]
            assert m["n_permutations"] == 49 and 1 / 50 <= m["permutation_p_value"] <= 1
            null = (planted / f"reports/{model}/{scheme}/permutation_null.csv").read_text().split()[1:]
            assert len(null) == 49 and len(set(null)) > 1  # permuted sexes move the null, unlike within-cage shuffles
            assert m["permutation_p_value"] == permutation_p_value(m["accuracy"], np.array(null, dtype=float))


def test_every_model_writes_the_same_reports(planted):
    for model in ("cnn", "knn", "svm"):
        folder = planted / "reports" / model / "balanced"
        names = {p.name for p in folder.iterdir()}
        assert {"metrics.json", "confusion.json", "confusion.png", "predictions.csv", "folds.csv"} <= names
        confusion = json.loads((folder / "confusion.json").read_text())
        assert confusion["classes"] == ["AM", "JM", "AF", "JF"]
        assert sum(map(sum, confusion["counts"])) == 64  # each recording once: its folds' predictions averaged
    assert (planted / "reports/cnn/balanced/loss.csv").exists() and (planted / "reports/cnn/balanced/loss.png").exists()


def test_mlflow_holds_a_parent_run_per_model_and_scheme_with_nested_fold_runs(planted):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=[PLANTED_EXPERIMENT], filter_string="tags.model_family != ''")
    runs = runs[runs["tags.data_source"] == "synthetic"]
    parents = runs[runs["tags.fold"].isna() & runs["tags.final"].isna()]
    keys = {}
    n_folds = {"balanced": 8, "loco": 8, "kfold": 6}  # balanced: 2 matchings of 4 male-female pairs
    for model in ("cnn", "knn", "svm"):
        for scheme in n_folds:
            mine = parents[(parents["tags.model_family"] == model) & (parents["tags.cv_scheme"] == scheme)]
            assert len(mine) >= 1, (model, scheme)
            parent = mine.iloc[0]
            assert parent["status"] == "FINISHED" and parent["tags.git_commit"] and parent["tags.data_version"]
            keys[model, scheme] = {c for c in mine.columns if c.startswith("metrics.") and mine[c].notna().any()}
            folds = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
            assert len(folds) == n_folds[scheme] and set(folds["tags.fold"]) != {None}
    common = {"metrics.accuracy", "metrics.balanced_accuracy", "metrics.accuracy_ci_low", "metrics.chance_level"}
    common |= {"metrics.below_chance_p"}
    for scheme in n_folds:
        assert common <= keys["cnn", scheme]
        p_value = {"metrics.permutation_p_value"}  # undefined for the CNN here: its permutations are off
        assert keys["cnn", scheme] - {"metrics.train_loss"} - p_value == keys["knn", scheme] - p_value
        assert keys["knn", scheme] == keys["svm", scheme]
    cnn_fold = runs[(runs["tags.model_family"] == "cnn") & runs["tags.fold"].notna()].iloc[0]
    history = mlflow.MlflowClient().get_metric_history(cnn_fold["run_id"], "train_loss")
    assert [m.step for m in history] == list(range(1, 31))


def test_training_without_stacks_is_a_clear_error(tmp_path):
    small_params(tmp_path, n_cages=2)
    proc = subprocess.run([BIN / "lmt-stereotype", "train"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "stacks.npz" in proc.stderr and "histograms" in proc.stderr and "Traceback" not in proc.stderr


def test_the_tuned_cnn_is_nested_cross_validated_and_its_trials_are_mlflow_runs(planted):
    raw = yaml.safe_load((planted / "params.yaml").read_text())
    raw["data"]["reports"] = "reports_tuned"
    raw["evaluation"].update(schemes=["balanced"], matchings=1)
    raw["tuning"].update(mode="nested", n_trials=2, inner_folds=2, study="tiny")
    raw["tuning"]["space"]["epochs"] = [20, 30]
    (planted / "tuned.yaml").write_text(yaml.safe_dump(raw))
    cli("train", "--params", "tuned.yaml", cwd=planted)
    balanced = metrics(planted / "reports_tuned", "cnn")["balanced"]
    assert balanced["accuracy"] > balanced["significance_threshold"]
    assert balanced["permutation_p_value"] is None  # a permutation would be a whole nested tuning
    folds = (planted / "reports_tuned/cnn/balanced/folds.csv").read_text()
    assert "inner_accuracy_best" in folds and "best_lr" in folds
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=[PLANTED_EXPERIMENT], filter_string="tags.tuning = 'nested'")
    parent = runs[runs["tags.fold"].isna() & runs["tags.final"].isna()].iloc[0]
    assert parent["params.tuning.n_trials"] == "2" and parent["params.cnn.lr"] == "0.001"
    fold_runs = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert len(fold_runs) == 4  # one matching: 4 pairs of a male and a female cage
    trials = runs[runs["tags.mlflow.parentRunId"].isin(fold_runs["run_id"])]
    assert len(trials) == 8 and trials["metrics.inner_accuracy"].notna().all()
    assert set(trials["params.lr"]) >= {"0.001"}  # the fixed setting is a trial of every study
    final = runs[(runs["tags.final"] == "true") & runs["tags.trial"].isna()].iloc[
        0
    ]  # tuned once more on every cage, then registered
    assert len(runs[runs["tags.mlflow.parentRunId"] == final["run_id"]]) == 2
    assert final["tags.registered_alias"] in {"champion", "challenger"}
    assert final["metrics.accuracy"] == balanced["accuracy"] and final["tags.promotion_reason"]


def test_train_registers_the_final_model_with_its_expected_accuracy_and_the_reason_for_its_alias(planted):
    final = json.loads((planted / "reports/registered_model.json").read_text())
    assert final["model_uri"] == f"models:/lmt-stereotype-cnn/{final['version']}"
    balanced = metrics(planted, "cnn")["balanced"]
    assert final["value"] == balanced["balanced_accuracy"]
    version = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version(final["name"], final["version"])
    assert version.tags["tuning"] == "off" and version.tags["data_source"] == "synthetic"
    assert version.tags["cv.scheme"] == "balanced" and version.tags["promotion_reason"] == final["reason"]
    assert "Cross-validated (cage-balanced" in version.description
    interval = f"[{balanced['accuracy_ci_low']:.3f}, {balanced['accuracy_ci_high']:.3f}]"  # no permutations here
    assert final["reason"].startswith(f"significantly above chance (cage-bootstrap interval {interval} lies above")
