"""Any question a lab asks: README's genotype example, end to end through the CLI, on small cohorts.

Two simulated cohorts of 6 cages with 2 WT + 2 KO mice in every cage (genotype varies
within cages, so the balanced scheme leaves one cage out per fold and permutations shuffle
genotypes within cages), one with a planted KO effect and one without. With the effect every
model beats chance; without it none does, and none is significantly below chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cohort import ROOT, TRAINING, _merge, cli

from lmt_stereotype.evaluation import above_chance
from lmt_stereotype.histograms import Stacks

pytestmark = pytest.mark.slow  # two cohorts, each simulated, trained and explained through the CLI

CONFIG = "configs/genotype.yaml"
STAGES = ("simulate", "stops", "histograms", "train", "baselines", "explain", "report")
MODELS = ("cnn", "knn", "svm")


def genotype_example(folder: Path, strength: float, stages: tuple[str, ...] = STAGES) -> Path:
    """README's genotype example in ``folder``: configs/genotype.yaml with 6 cages, quick training
    settings and the planted KO effect's ``strength``; its ``stages`` run as README runs them."""
    raw = yaml.safe_load((ROOT / CONFIG).read_text())
    _merge(raw, TRAINING)
    _merge(
        raw,
        {
            "simulate": {"n_cages": 6, "genotype": {"strength": strength}},
            "evaluation": {"schemes": ["balanced"]},
            "explain": {"n_permutations": 19, "ig_steps": 4},
        },
    )
    (folder / "configs").mkdir()
    (folder / CONFIG).write_text(yaml.safe_dump(raw))
    for stage in stages:
        cli(stage, "--params", CONFIG, cwd=folder)
    return folder


@pytest.fixture(scope="module")
def planted(module_tmp) -> Path:
    return genotype_example(module_tmp.mktemp("genotype-planted"), strength=3.0)


@pytest.fixture(scope="module")
def absent(module_tmp) -> Path:
    return genotype_example(module_tmp.mktemp("genotype-absent"), strength=0.0, stages=STAGES[:5])


def balanced_metrics(folder: Path, model: str) -> dict[str, float]:
    """The balanced scheme's metrics as ``train``/``baselines`` wrote them (NaN is JSON's null)."""
    written = json.loads((folder / f"reports/genotype/{model}.json").read_text())["balanced"]
    return {k: np.nan if v is None else v for k, v in written.items()}


def test_the_stacks_ask_about_the_genotype_and_keep_sex_and_age_as_groups(planted):
    stacks = Stacks.load(planted / "data/genotype/processed/stacks.npz")
    assert stacks.target_column == "genotype" and stacks.classes == ("KO", "WT")
    assert set(stacks.groups) >= {"sex", "age"}
    for cage in np.unique(stacks.cage):  # 2 KO + 2 WT mice in every cage, at both ages
        assert sorted(stacks.label[stacks.cage == cage]) == ["KO"] * 4 + ["WT"] * 4


@pytest.mark.parametrize("model", MODELS)
def test_a_planted_genotype_effect_is_found_by_every_model(planted, model):
    metrics = balanced_metrics(planted, model)
    significant, evidence = above_chance(metrics, 0.95)
    assert significant, (model, evidence, metrics["accuracy"])
    assert metrics["chance_level"] == 0.5 and metrics["roc_auc"] > 0.5
    assert {"accuracy_female", "accuracy_male", "accuracy_age_adult", "accuracy_age_juvenile"} <= set(metrics)


@pytest.mark.parametrize("model", MODELS)
def test_without_a_genotype_effect_no_model_beats_chance_nor_falls_below_it(absent, model):
    metrics = balanced_metrics(absent, model)
    significant, evidence = above_chance(metrics, 0.95)
    assert not significant, (model, evidence, metrics["accuracy"])
    assert metrics["below_chance_p"] > 0.05, (model, metrics["accuracy"])


def test_the_registered_genotype_model_predicts_wt_or_ko_through_pyfunc_and_predict(planted, mlflow_store, tmp_path):
    record = json.loads((planted / "reports/genotype/registered_model.json").read_text())
    assert record["name"] == "lmt-stereotype-cnn-genotype"
    mlflow.set_tracking_uri(mlflow_store)  # where the CLI tracked (conftest)
    model = mlflow.pyfunc.load_model(record["model_uri"])
    assert model.metadata.metadata["target"] == "genotype"
    stacks = Stacks.load(planted / "data/genotype/processed/stacks.npz")
    frame = model.predict(stacks.X[:8])
    assert list(frame.columns) == ["predicted", "p_KO", "p_WT"]
    assert set(frame["predicted"]) <= {"WT", "KO"}
    out = tmp_path / "predictions.csv"
    recording = "data/genotype/raw/cage01_adult.sqlite"
    cli("predict", recording, "--params", CONFIG, "--out", str(out), cwd=planted)
    table = pd.read_csv(out)
    assert len(table) == 4 and set(table["predicted"]) <= {"WT", "KO"}
    np.testing.assert_allclose(table[["p_KO", "p_WT"]].sum(axis=1), 1.0, atol=1e-5)


def test_the_explanation_has_one_panel_per_genotype(planted):
    for model in ("final", "held_out"):
        folder = planted / "reports/genotype/explain" / model
        with np.load(folder / "maps.npz") as maps:
            assert {maps[k].shape[0] for k in maps.files} == {2}, model  # WT and KO, each its own map
        assert (folder / "integrated_gradients.png").exists()


def test_the_report_and_the_runs_name_the_genotype(planted, mlflow_store):
    page = (planted / "reports/genotype/report/index.html").read_text()
    assert "genotype" in page and "Table 1" not in page
    mlflow.set_tracking_uri(mlflow_store)  # where the CLI tracked (conftest)
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype-genotype"])
    assert len(runs) and set(runs["tags.target"]) == {"genotype"}


def test_the_genotype_model_is_validated_on_another_genotype_cohort_as_a_genotype_question(planted):
    record = json.loads((planted / "reports/genotype/registered_model.json").read_text())
    cli("simulate", "--params", CONFIG, "--seed", "5", "--cages", "4", "--out", "data/genotype/second", cwd=planted)
    manifest, model = "data/genotype/second/manifest.csv", record["model_uri"]
    cli("validate", manifest, "--params", CONFIG, "--model", model, cwd=planted)
    report = planted / "reports/genotype/external/second"
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"recall_KO", "recall_WT", "roc_auc", "accuracy_female", "accuracy_male"} <= set(metrics)
    assert metrics["chance_level"] == 0.5 and metrics["n_recordings"] == 32
    assert metrics["accuracy"] > 0.5 and metrics["permutation_p_value"] <= 0.05  # the planted KO effect, found anew
    assert json.loads((report / "confusion.json").read_text())["classes"] == ["KO", "WT"]
