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

from lmt_stereotype.config import LMTGeometry
from lmt_stereotype.manifest import read_manifest, resolve

TRAINING = {
    "cnn": {"epochs": 30, "n_permutations": 0},
    "baselines": {"n_permutations": 49},
    "evaluation": {"kfold_splits": 6, "n_bootstrap": 500},
    "tuning": {"enabled": False},
}


def cohort(tmp_path_factory, name: str, simulate: dict, **effects: float) -> Path:
    folder = tmp_path_factory.mktemp(name)
    small_params(folder, n_cages=6, sections={**TRAINING, "simulate": simulate}, **effects)
    cli("simulate", cwd=folder)
    cli("preprocess", cwd=folder)
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """6 cages (3 male, 3 female) with strong planted class effects and mild cage fingerprints."""
    folder = cohort(tmp_path_factory, "planted", {"seed": 1, "cage_variability": 0.25}, strength=3.0)
    cli("train", cwd=folder)
    cli("baselines", cwd=folder)
    return folder


def metrics(folder: Path, model: str) -> dict:
    """``reports/<model>.json`` of a cohort folder (or of a reports folder itself)."""
    folder = folder / "reports" if (folder / "reports").is_dir() else folder
    return json.loads((folder / f"{model}.json").read_text())


def test_the_cnn_beats_chance_clearly_on_planted_effects(planted):
    loco = metrics(planted, "cnn")["loco"]
    assert loco["chance_level"] == 0.25 and loco["n_recordings"] == 48 and loco["n_cages"] == 6
    assert loco["accuracy"] > loco["significance_threshold"] > loco["chance_level"]
    assert loco["accuracy"] >= 0.5
    assert loco["accuracy_binomial_low"] > loco["chance_level"]


def test_the_baselines_p_value_comes_from_design_respecting_permutations(planted):
    for model in ("knn", "svm"):
        loco = metrics(planted, model)["loco"]
        assert loco["n_permutations"] == 49 and 1 / 50 <= loco["permutation_p_value"] <= 1
        null = (planted / f"reports/{model}/loco/permutation_null.csv").read_text().split()[1:]
        assert len(null) == 49 and len(set(null)) > 1  # permuted sexes move the null, unlike within-cage shuffles
    assert metrics(planted, "knn")["loco"]["accuracy"] > 0.25 + 0.1


def test_every_model_writes_the_same_reports(planted):
    for model in ("cnn", "knn", "svm"):
        folder = planted / "reports" / model / "loco"
        names = {p.name for p in folder.iterdir()}
        assert {"metrics.json", "confusion.json", "confusion.png", "predictions.csv", "folds.csv"} <= names
        confusion = json.loads((folder / "confusion.json").read_text())
        assert confusion["classes"] == ["AM", "JM", "AF", "JF"]
        assert sum(map(sum, confusion["counts"])) == 48
    assert (planted / "reports/cnn/loco/loss.csv").exists() and (planted / "reports/cnn/loco/loss.png").exists()


def test_mlflow_holds_a_parent_run_per_model_and_scheme_with_nested_fold_runs(planted):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"], filter_string="tags.model_family != ''")
    runs = runs[runs["tags.data_source"] == "synthetic"]
    parents = runs[runs["tags.fold"].isna() & runs["tags.final"].isna()]
    keys = {}
    for model in ("cnn", "knn", "svm"):
        for scheme in ("loco", "kfold"):
            mine = parents[(parents["tags.model_family"] == model) & (parents["tags.cv_scheme"] == scheme)]
            assert len(mine) >= 1, (model, scheme)
            parent = mine.iloc[0]
            assert parent["status"] == "FINISHED" and parent["tags.git_commit"] and parent["tags.data_version"]
            keys[model, scheme] = {c for c in mine.columns if c.startswith("metrics.") and mine[c].notna().any()}
            folds = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
            assert len(folds) == 6 and set(folds["tags.fold"]) != {None}
    common = {"metrics.accuracy", "metrics.balanced_accuracy", "metrics.accuracy_ci_low", "metrics.chance_level"}
    for scheme in ("loco", "kfold"):
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
    raw["evaluation"]["schemes"] = ["loco"]
    raw["tuning"].update(enabled=True, n_trials=2, inner_folds=2, study="tiny")
    raw["tuning"]["space"]["epochs"] = [20, 30]
    (planted / "tuned.yaml").write_text(yaml.safe_dump(raw))
    cli("train", "--params", "tuned.yaml", cwd=planted)
    loco = metrics(planted / "reports_tuned", "cnn")["loco"]
    assert loco["accuracy"] > loco["significance_threshold"]
    assert loco["permutation_p_value"] is None  # a permutation would be a whole nested tuning
    folds = (planted / "reports_tuned/cnn/loco/folds.csv").read_text()
    assert "inner_accuracy_best" in folds and "best_lr" in folds
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"], filter_string="tags.tuning = 'nested'")
    parent = runs[runs["tags.fold"].isna() & runs["tags.final"].isna()].iloc[0]
    assert parent["params.tuning.n_trials"] == "2" and parent["params.cnn.lr"] == "0.001"
    fold_runs = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert len(fold_runs) == 6
    trials = runs[runs["tags.mlflow.parentRunId"].isin(fold_runs["run_id"])]
    assert len(trials) == 12 and trials["metrics.inner_accuracy"].notna().all()
    assert set(trials["params.lr"]) >= {"0.001"}  # the fixed setting is a trial of every study
    final = runs[(runs["tags.final"] == "true") & runs["tags.trial"].isna()].iloc[
        0
    ]  # tuned once more on every cage, then registered
    assert len(runs[runs["tags.mlflow.parentRunId"] == final["run_id"]]) == 2
    assert (
        final["tags.registered_alias"] in {"champion", "challenger"} and final["metrics.accuracy"] == loco["accuracy"]
    )


@pytest.fixture(scope="module")
def new_recordings(tmp_path_factory) -> Path:
    """Two cages the models never saw, planted as strongly as the training cohort."""
    folder = tmp_path_factory.mktemp("new")
    small_params(folder, n_cages=2, sections={"simulate": {"seed": 11, "cage_variability": 0.25}}, strength=3.0)
    cli("simulate", cwd=folder)
    return folder / "data/raw"


def registered(folder: Path) -> str:
    return json.loads((folder / "reports/cnn/final.json").read_text())["model_uri"]


def test_train_registers_the_final_model_with_its_expected_accuracy(planted):
    final = json.loads((planted / "reports/cnn/final.json").read_text())
    assert final["model_uri"] == f"models:/lmt-stereotype-cnn/{final['version']}"
    assert final["value"] == metrics(planted, "cnn")["loco"]["balanced_accuracy"]
    version = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version(final["name"], final["version"])
    assert version.tags["tuning"] == "off" and version.tags["data_source"] == "synthetic"
    assert "leave-one-cage-out cross-validated accuracy" in version.description


def test_predict_returns_the_planted_class_of_strongly_planted_mice(planted, new_recordings, tmp_path):
    manifest = new_recordings / "manifest.csv"
    truth = resolve(read_manifest(manifest), manifest, LMTGeometry())
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
    for model, row in zip(["cnn", "knn", "svm"], table.itertuples()):
        loco = metrics(planted, model)["loco"]
        assert row.accuracy == f"{loco['accuracy']:.1%}" and row.chance == "25.0%"
        assert row.females == f"{loco['accuracy_female']:.1%}" and row.males == f"{loco['accuracy_male']:.1%}"
    assert table["paper"].tolist() == ["77.1% (F 91.7%, M 62.5%)", "62.0%", "72.0%"]
    assert "Cohort" in page and "leave-one-cage-out" in page and "registered as" in page
    assert (folder / "confusion_matrices.png").stat().st_size > 10_000
    sources = re.findall(r"<img src='([^']{0,30})", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # one self-contained file


def test_the_report_without_results_names_the_missing_file(tmp_path):
    from cohort import tiny_project

    tiny_project(tmp_path)
    proc = subprocess.run([BIN / "lmt-stereotype", "report"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "reports/cnn.json" in proc.stderr and "lmt-stereotype train" in proc.stderr
