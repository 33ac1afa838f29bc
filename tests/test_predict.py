"""`lmt-stereotype predict`: a registered model classifies the mice of recordings it never saw,
with the parameters it was trained under, and refuses what it cannot read.

The registered model comes from the trained cohort ``planted`` (conftest.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cohort import BIN, cli, small_params
from helpers.params import DEMO

from lmt_stereotype.labels import sample_labels
from lmt_stereotype.manifest import read_manifest, resolve

pytestmark = pytest.mark.slow  # reads the trained cohort `planted` and simulates new recordings


@pytest.fixture(scope="module")
def new_recordings(tmp_path_factory) -> Path:
    """Two cages the models never saw, planted as strongly as the training cohort."""
    folder = tmp_path_factory.mktemp("new")
    small_params(folder, n_cages=2, sections={"simulate": {"seed": 11, "cage_variability": 0.25}}, strength=3.0)
    cli("simulate", cwd=folder)
    return folder / "data/raw"


def registered(folder: Path) -> str:
    return json.loads((folder / "reports/registered_model.json").read_text())["model_uri"]


def test_predict_returns_the_planted_class_of_strongly_planted_mice(planted, new_recordings, tmp_path):
    manifest = new_recordings / "manifest.csv"
    truth = resolve(read_manifest(manifest), manifest, DEMO.lmt)
    right = 0
    for recording, mice in truth.groupby("recording"):
        out = tmp_path / f"{recording}.csv"
        cli("predict", str(new_recordings / recording), "--model", registered(planted), "--out", str(out), cwd=planted)
        table = pd.read_csv(out).merge(mice, on="animal_id", validate="one_to_one")
        assert len(table) == 4 and np.allclose(table.filter(like="p_").sum(axis=1), 1, atol=1e-5)
        right += (table["predicted"] == sample_labels(table, "class")).sum()
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
