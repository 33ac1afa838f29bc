"""`lmt-stereotype report`: the results page puts the models beside the paper's Table 1, in one
self-contained file, and names what is missing when training has not run.

The trained cohort ``planted`` is a fixture of conftest.py."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
from helpers.cohort import BIN, cli, metrics, tiny_project

pytestmark = pytest.mark.slow  # reads the trained cohort `planted`; `lmt-stereotype report` imports the whole stack


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
    tiny_project(tmp_path)
    proc = subprocess.run([BIN / "lmt-stereotype", "report"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "reports/cnn.json" in proc.stderr and "lmt-stereotype train" in proc.stderr
