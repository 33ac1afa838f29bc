"""`lmt-stereotype report`: the results page puts the models beside the paper's Table 1, in one
self-contained file, and names what is missing when training has not run; for any other
target it names the question, says how the design made the folds and permutations, and
leaves the paper out.

The trained cohort ``planted`` is a fixture of conftest.py; the other targets' pages are
built from hand-written reports."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cohort import BIN, cli, metrics, tiny_project
from helpers.params import DEMO, varied

import lmt_stereotype.design as design
import lmt_stereotype.report as report
from lmt_stereotype.errors import InputError
from lmt_stereotype.labels import PAPER_CLASSES, Target

PAPER_COLUMNS = [
    "model",
    "accuracy (balanced)",
    "95% interval over cages",
    "exact binomial 95%",
    "balanced accuracy",
    "females",
    "males",
    "permutation p",
    "below-chance p",
    "chance",
    "leave-one-cage-out (caveat below)",
    "K-fold (leaky)",
    "paper (leave-one-cage-out)",
]
"""The results table's columns for the paper's question, as before targets."""


@pytest.mark.slow  # reads the trained cohort `planted`
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
    assert list(table.columns) == PAPER_COLUMNS
    assert list(table.columns).index("accuracy (balanced)") < list(table.columns).index(
        "leave-one-cage-out (caveat below)"
    )
    assert "Cohort" in page and "stratification bias" in page and "registered as" in page
    assert (folder / "confusion_matrices.png").stat().st_size > 10_000
    sources = re.findall(r"<img src='([^']{0,30})", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # one self-contained file


@pytest.mark.slow  # `lmt-stereotype report` imports the whole stack
def test_the_report_without_results_names_the_missing_file(tmp_path):
    tiny_project(tmp_path)
    proc = subprocess.run([BIN / "lmt-stereotype", "report"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "reports/cnn.json" in proc.stderr and "lmt-stereotype train" in proc.stderr


# --- any target, from hand-written reports -------------------------------------------------


def fake_metrics(target: Target, accuracy: float, levels: dict[str, float]) -> dict[str, float]:
    m = {
        "accuracy": accuracy,
        "accuracy_ci_low": accuracy - 0.1,
        "accuracy_ci_high": accuracy + 0.1,
        "accuracy_binomial_low": accuracy - 0.12,
        "accuracy_binomial_high": accuracy + 0.12,
        "balanced_accuracy": accuracy,
        "f1_macro": accuracy,
        "chance_level": 1 / len(target.classes),
        "significance_threshold": 0.7,
        "permutation_p_value": 0.01,
        "below_chance_p": 0.9,
        **levels,
        **{f"recall_{c}": accuracy for c in target.classes},
    }
    if len(target.classes) == 2:
        m |= {"roc_auc": 0.81, "roc_auc_ci_low": 0.7, "roc_auc_ci_high": 0.9, "roc_auc_folds": 4.0}
    return m


def fake_project(folder: Path, target: Target, labels: list[str], cages: list[str], levels: dict[str, float]):
    """The reports the page reads, as the stages write them, for ``labels`` of ``target`` in ``cages``;
    returns the parameters pointing at them."""
    reports, stops = folder / "reports", folder / "stops"
    y = target.indices(labels)
    n = len(target.classes)
    for model, accuracy in {"cnn": 0.8, "knn": 0.6, "svm": 0.7}.items():
        (reports / model / "balanced").mkdir(parents=True)
        m = fake_metrics(target, accuracy, levels)
        per_scheme = {"balanced": m, "loco": {**m, "accuracy": accuracy - 0.05}, "kfold": {**m, "accuracy": 0.95}}
        (reports / f"{model}.json").write_text(json.dumps(per_scheme))
        counts = np.zeros((n, n), dtype=int)
        np.add.at(counts, (y, y), 1)
        confusion = {"target": target.column, "classes": list(target.classes), "counts": counts.tolist()}
        (reports / model / "balanced" / "confusion.json").write_text(json.dumps(confusion))
        table = pd.DataFrame({"recording": "r", "animal_id": 1, "cage": cages, "fold": "f", "true": labels})
        table.assign(predicted=labels).to_csv(reports / model / "balanced" / "predictions.csv", index=False)
    cohort = {"n_cages": len(set(cages)), "n_samples": len(labels), "n_stops": 1000, "n_stops_in_window": 900}
    cohort |= {f"n_{c}": labels.count(c) for c in target.classes} | {"n_without_target": 2}
    (reports / "histograms.json").write_text(json.dumps(cohort))
    stops.mkdir()
    pd.DataFrame({"recording_id": ["a", "b"], "duration_s": [3600.0, 3600.0], "n_animals": [4, 4]}).to_csv(
        stops / "recordings.csv", index=False
    )
    data = varied(DEMO.data, reports=reports, stops=stops)
    return DEMO.model_copy(update={"data": data, "target": varied(DEMO.target, column=target.column)})


GENOTYPE = Target("genotype", ("WT", "KO"))
CAGES = [f"cage{c}" for c in range(4) for _ in range(4)]
MIXED = ["WT", "KO"] * 8  # littermates of both genotypes in every cage
PER_CAGE = ["WT"] * 8 + ["KO"] * 8  # one genotype per cage
PROVENANCE = {"data_version": "abc123", "data_source": "synthetic"}


@pytest.fixture
def panels(monkeypatch):
    """The confusion-matrix panels the page draws: titles and classes."""
    drawn = {}
    draw = report.confusion_panels_figure

    def record(panels, classes, path):
        drawn.update(titles=list(panels), classes=list(classes))
        draw(panels, classes, path)

    monkeypatch.setattr(report, "confusion_panels_figure", record)
    return drawn


def test_the_page_for_a_genotype_names_the_question_and_leaves_the_paper_out(tmp_path, panels):
    levels = {"accuracy_female": 0.75, "accuracy_male": 0.85, "accuracy_strain_B6": 0.8}
    params = fake_project(tmp_path, GENOTYPE, MIXED, CAGES, levels)
    (tmp_path / "page").mkdir()
    page = html.unescape(report.write_report(params, tmp_path / "page", PROVENANCE).read_text())
    table = pd.read_csv(tmp_path / "page" / "results.csv", dtype=str)
    assert "<h1>lmt-stereotype: genotype (WT vs KO) from where and when mice stop</h1>" in page
    assert "Table 1" not in page and "77.1" not in page and "paper's column" not in page
    assert not [c for c in table.columns if "paper" in c]
    assert list(table.columns[5:9]) == ["females", "males", "strain B6", "ROC AUC per fold (95%)"]
    assert table["ROC AUC per fold (95%)"].tolist() == ["0.81 (0.70–0.90)"] * 3
    assert panels == {"titles": ["CNN (ours)", "PCA + 1-NN (ours)", "PCA + SVM (ours)"], "classes": ["WT", "KO"]}
    assert "genotype: WT vs KO" in page and "WT 8, KO 8 (2 more without a genotype, left out)" in page
    assert "genotype constant within 0 of the 4 cages (a within-cage factor)" in page
    assert "as the design allows (genotype within a cage)" in page
    assert "here leave-one-cage-out (genotype varies within cages), so every training set holds every class" in page
    assert "Chance is 50% (always the most frequent of the 2 classes)" in page and "ROC AUC is computed" in page


def test_the_page_for_a_genotype_per_cage_says_which_cages_were_held_out_together(tmp_path, panels):
    params = fake_project(tmp_path, GENOTYPE, PER_CAGE, CAGES, {})
    (tmp_path / "page").mkdir()
    page = html.unescape(report.write_report(params, tmp_path / "page", PROVENANCE).read_text())
    assert (
        "genotype constant within 4 of the 4 cages (a cage factor). Cages by level: WT: cage0, cage1; KO: cage2" in page
    )
    assert (
        "each fold holds out one cage each of WT and KO, so every training set keeps the cohort's balance of WT" in page
    )
    assert "as the design allows (genotype across cages)" in page and "stratification bias" in page
    table = pd.read_csv(tmp_path / "page" / "results.csv", dtype=str)
    assert "females" not in table.columns and "ROC AUC per fold (95%)" in table.columns


def test_the_page_for_the_paper_s_classes_keeps_table_1_and_the_paper_s_columns(tmp_path, panels):
    target = Target("class", PAPER_CLASSES)
    labels = ["AM", "JM"] * 4 + ["AF", "JF"] * 4  # two male cages, two female ones
    levels = {"accuracy_female": 0.9, "accuracy_male": 0.7, "accuracy_age_adult": 0.8, "accuracy_sex": 0.9}
    params = fake_project(tmp_path, target, labels, CAGES, levels)
    (tmp_path / "page").mkdir()
    page = html.unescape(report.write_report(params, tmp_path / "page", PROVENANCE).read_text())
    table = pd.read_csv(tmp_path / "page" / "results.csv", dtype=str)
    assert list(table.columns) == PAPER_COLUMNS  # no age levels, no ROC AUC: the paper's table
    assert table["paper (leave-one-cage-out)"].tolist() == ["77.1% (F 91.7%, M 62.5%)", "62.0%", "72.0%"]
    assert panels["titles"][0] == "Paper, Table 1" and panels["classes"] == list(PAPER_CLASSES)
    assert "<h1>lmt-stereotype: sex and age from where and when mice stop</h1>" in page
    assert "Left: the paper's Table 1." in page and "Chance is 25% (four balanced classes)" in page
    assert "as the design allows (sex across cages, age within a cage)" in page and "stratification bias" in page
    assert "sex and age (the paper's four classes): AM, JM, AF, JF" in page
    assert "each fold holds out one cage each of M and F, so every training set keeps the cohort" in page


def test_reports_for_another_target_than_asked_are_named(tmp_path):
    params = fake_project(tmp_path, GENOTYPE, MIXED, CAGES, {})
    path = tmp_path / "reports/knn/balanced/confusion.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "classes": ["KO", "WT"]}))
    with pytest.raises(InputError, match=r"knn/balanced/confusion.json.*genotype WT KO.*baselines"):
        report.gather(params)
    params = params.model_copy(update={"target": varied(params.target, column="sex")})
    with pytest.raises(InputError, match=r"cnn/balanced/confusion.json: is for target genotype WT KO, not params"):
        report.gather(params)


def test_the_design_s_permutations_in_words():
    assert design.permutation_words(GENOTYPE, GENOTYPE.indices(MIXED), np.array(CAGES)) == "genotype within a cage"
    assert design.permutation_words(GENOTYPE, GENOTYPE.indices(PER_CAGE), np.array(CAGES)) == "genotype across cages"
    paper = Target("class", PAPER_CLASSES)
    labels = paper.indices(["AM", "JM"] * 4 + ["AF", "JF"] * 4)
    assert design.permutation_words(paper, labels, np.array(CAGES)) == "sex across cages, age within a cage"
