"""The models on simulated cohorts, through the CLI: planted effects are found, cage
fingerprints are not mistaken for them, and MLflow holds comparable runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from cohort import BIN, cli, small_params
from helpers.params import DEMO

from lmt_stereotype.evaluation import permutation_p_value
from lmt_stereotype.manifest import read_manifest, resolve

TRAINING = {
    "cnn": {"epochs": 30, "n_permutations": 0},
    "baselines": {"n_permutations": 49},
    "evaluation": {"kfold_splits": 6, "n_bootstrap": 500, "chance_permutations": 500},
    "tuning": {"mode": "off"},
}


def cohort(tmp_path_factory, name: str, simulate: dict, **effects: float) -> Path:
    """8 cages (4 male, 4 female), each recorded juvenile and adult: the paper's design, smaller."""
    folder = tmp_path_factory.mktemp(name)
    small_params(folder, n_cages=8, sections={**TRAINING, "simulate": simulate}, **effects)
    cli("simulate", cwd=folder)
    cli("preprocess", cwd=folder)
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """8 cages with the demo's moderate class effects and cage fingerprints."""
    folder = cohort(tmp_path_factory, "planted", {"seed": 1})
    cli("train", cwd=folder)
    cli("baselines", cwd=folder)
    return folder


def metrics(folder: Path, model: str) -> dict:
    """``reports/<model>.json`` of a cohort folder (or of a reports folder itself)."""
    folder = folder / "reports" if (folder / "reports").is_dir() else folder
    return json.loads((folder / f"{model}.json").read_text())


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
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"], filter_string="tags.model_family != ''")
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
    assert "stacks.npz" in proc.stderr and "preprocess" in proc.stderr and "Traceback" not in proc.stderr


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
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"], filter_string="tags.tuning = 'nested'")
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


@pytest.fixture(scope="module")
def new_recordings(tmp_path_factory) -> Path:
    """Two cages the models never saw, planted as strongly as the training cohort."""
    folder = tmp_path_factory.mktemp("new")
    small_params(folder, n_cages=2, sections={"simulate": {"seed": 11, "cage_variability": 0.25}}, strength=3.0)
    cli("simulate", cwd=folder)
    return folder / "data/raw"


def registered(folder: Path) -> str:
    return json.loads((folder / "reports/registered_model.json").read_text())["model_uri"]


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


def test_predict_returns_the_planted_class_of_strongly_planted_mice(planted, new_recordings, tmp_path):
    manifest = new_recordings / "manifest.csv"
    truth = resolve(read_manifest(manifest), manifest, DEMO.lmt)
    right = 0
    for recording, mice in truth.groupby("recording"):
        out = tmp_path / f"{recording}.csv"
        cli("predict", str(new_recordings / recording), "--model", registered(planted), "--out", str(out), cwd=planted)
        table = pd.read_csv(out).merge(mice, on="animal_id", validate="one_to_one")
        assert len(table) == 4 and np.allclose(table.filter(like="p_").sum(axis=1), 1, atol=1e-5)
        right += (table["predicted"] == table["label"]).sum()
    assert right / len(truth) >= 0.75, right


def test_predict_builds_stacks_with_the_models_parameters_not_todays(planted, new_recordings, tmp_path):
    raw = yaml.safe_load((planted / "params.yaml").read_text())
    raw["histograms"].update(n_intervals=3, grid=10)  # would make stacks the model cannot read
    raw["stops"]["speed_threshold_cm_s"] = 1.0
    (planted / "changed.yaml").write_text(yaml.safe_dump(raw))
    db, uri = str(new_recordings / "cage02_adult.sqlite"), registered(planted)
    before = cli("predict", db, "--model", uri, cwd=planted).stdout
    assert cli("predict", db, "--model", uri, "--params", "changed.yaml", cwd=planted).stdout == before
    champion = cli("predict", db, "--model", "models:/lmt-stereotype-cnn@champion", cwd=planted).stdout
    assert cli("predict", db, cwd=planted).stdout == champion  # README: no --model means the champion


def test_predict_refuses_a_recording_shorter_than_the_models_window(planted, new_recordings, tmp_path):
    short = tmp_path / "short.sqlite"
    shutil.copy(new_recordings / "cage01_adult.sqlite", short)
    with sqlite3.connect(short) as db:
        for table in ("DETECTION", "FRAME"):
            db.execute(f"DELETE FROM {table} WHERE FRAMENUMBER > 30 * 600")
    proc = subprocess.run(
        [BIN / "lmt-stereotype", "predict", str(short), "--model", registered(planted)],
        cwd=planted,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "short.sqlite" in proc.stderr and "shorter than the model's window" in proc.stderr


def test_predict_with_a_model_that_does_not_exist_is_a_clear_error(planted, new_recordings):
    proc = subprocess.run(
        [
            BIN / "lmt-stereotype",
            "predict",
            str(new_recordings / "cage01_adult.sqlite"),
            "--model",
            "models:/nope@champion",
        ],
        cwd=planted,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "models:/nope@champion" in proc.stderr and "no such model" in proc.stderr


def test_the_report_puts_cnn_1nn_and_svm_beside_the_papers_table_1(planted):
    cli("report", cwd=planted)
    folder = planted / "reports/report"
    page = (folder / "index.html").read_text()
    table = pd.read_csv(folder / "results.csv")
    assert list(table["model"]) == ["CNN", "PCA + 1-NN", "PCA + SVM"]
    for model, (_, row) in zip(["cnn", "knn", "svm"], table.iterrows()):
        balanced, loco = metrics(planted, model)["balanced"], metrics(planted, model)["loco"]
        assert row["accuracy (balanced)"] == f"{balanced['accuracy']:.1%}" and row["chance"] == "25.0%"
        assert row["females"] == f"{balanced['accuracy_female']:.1%}"
        assert row["males"] == f"{balanced['accuracy_male']:.1%}"
        assert row["leave-one-cage-out (caveat below)"] == f"{loco['accuracy']:.1%}"
    assert table["paper (leave-one-cage-out)"].tolist() == ["77.1% (F 91.7%, M 62.5%)", "62.0%", "72.0%"]
    assert list(table.columns).index("accuracy (balanced)") < list(table.columns).index(
        "leave-one-cage-out (caveat below)"
    )
    assert "Cohort" in page and "stratification bias" in page and "registered as" in page
    assert (folder / "confusion_matrices.png").stat().st_size > 10_000
    sources = re.findall(r"<img src='([^']{0,30})", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # one self-contained file


def test_the_report_without_results_names_the_missing_file(tmp_path):
    from cohort import tiny_project

    tiny_project(tmp_path)
    proc = subprocess.run([BIN / "lmt-stereotype", "report"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "reports/cnn.json" in proc.stderr and "lmt-stereotype train" in proc.stderr
