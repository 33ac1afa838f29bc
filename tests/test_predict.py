"""`lmt-stereotype predict`: a registered model classifies the mice of recordings it never saw,
with the parameters it was trained under, and refuses what it cannot read.

The registered model comes from the trained cohort ``planted`` (conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cohort import BIN, PLANTED_EXPERIMENT, ROOT, cli, small_params
from helpers.mlflow_server import free_port, stop
from helpers.params import DEMO

from lmt_stereotype.clock import clock_hour
from lmt_stereotype.config import load_params
from lmt_stereotype.histograms import stack_window
from lmt_stereotype.labels import sample_labels
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import read_manifest, resolve
from lmt_stereotype.predict import load_model, recording_stacks

pytestmark = pytest.mark.slow  # reads the trained cohort `planted` and simulates new recordings


@pytest.fixture(scope="module")
def new_recordings(module_tmp) -> Path:
    """Two cages the models never saw, planted as strongly as the training cohort."""
    folder = module_tmp.mktemp("new")
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


def test_predict_over_a_folder_or_a_manifest_equals_one_predict_per_file(planted, new_recordings, tmp_path):
    files = sorted(new_recordings.glob("*.sqlite"))
    out, uri = str(tmp_path / "all.parquet"), registered(planted)
    cli("predict", str(new_recordings), str(files[0]), "--model", uri, "--out", out, cwd=planted)  # each once
    together = pd.read_parquet(out)
    assert together["recording"].unique().tolist() == [str(f) for f in files]
    manifest = str(new_recordings / "manifest.csv")
    cli("predict", manifest, "--model", uri, "--out", str(tmp_path / "listed.csv"), cwd=planted)
    listed = pd.read_csv(tmp_path / "listed.csv", dtype={"rfid": str}).sort_values(["recording", "animal_id"])
    pd.testing.assert_frame_equal(listed.reset_index(drop=True), together, check_dtype=False)
    for db in files:
        cli("predict", str(db), "--model", registered(planted), "--out", str(tmp_path / "one.csv"), cwd=planted)
        alone = pd.read_csv(tmp_path / "one.csv", dtype={"rfid": str})
        mine = together[together["recording"] == str(db)].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone, check_dtype=False)
    folder_runs = "tags.stage = 'predict' and metrics.n_recordings = 4"
    run = mlflow.search_runs(experiment_names=[PLANTED_EXPERIMENT], filter_string=folder_runs).iloc[0]
    assert run["tags.model_uri"] == registered(planted)
    inputs = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run.run_id}/inputs.csv", dst_path=str(tmp_path)))
    assert inputs["identity"].str.fullmatch("[0-9a-f]{16}").all() and inputs["identity"].is_unique


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


def shortened(new_recordings: Path, folder: Path, last_frame: int) -> Path:
    """A copy of a new recording (beside its simulation.json: the simulator's clock) ending at ``last_frame``."""
    short = folder / "short.sqlite"
    shutil.copy(new_recordings / "cage01_adult.sqlite", short)
    shutil.copy(new_recordings / "simulation.json", folder / "simulation.json")
    with sqlite3.connect(short) as db:
        for table in ("DETECTION", "FRAME"):
            db.execute(f"DELETE FROM {table} WHERE FRAMENUMBER > ?", (last_frame,))
    return short


def predict(planted: Path, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "lmt-stereotype", "predict", str(db), "--model", registered(planted)],
        cwd=planted,
        capture_output=True,
        text=True,
    )


def test_predict_refuses_a_recording_short_of_the_models_window_by_more_than_the_tolerance(
    planted, new_recordings, tmp_path
):
    proc = predict(planted, shortened(new_recordings, tmp_path, 30 * 600))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "short.sqlite: lasts 600.000 s (18000 frames)" in proc.stderr and "short of its window" in proc.stderr
    assert "more than histograms.pad_tolerance: 0.1 of one 180-s interval" in proc.stderr


def test_predict_pads_a_recording_two_frames_short_of_its_window_with_a_warning(planted, new_recordings, tmp_path):
    """The same tolerance as histograms: the window starts at 12:00 on the simulator's clock."""
    h = load_params(planted / "params.yaml").histograms
    with LMTDatabase(new_recordings / "cage01_adult.sqlite", DEMO.lmt) as db:
        window = stack_window(clock_hour(db.start_ms(), "UTC"), 30.0, h, "db")
        first, _ = db.frame_range()
    needed = round((window.offset_s + h.n_intervals * h.interval_s) * DEMO.lmt.fps)
    proc = predict(planted, shortened(new_recordings, tmp_path, first + needed - 1 - 2))
    assert proc.returncode == 0, proc.stderr
    assert "0.067 s (2 frames) short of its window" in proc.stderr and "padded (within" in proc.stderr


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


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever HTTP_PROXY says


@pytest.fixture
def served(planted, tmp_path) -> Iterator[str]:
    """``make serve`` of the planted model on loopback, as README starts it, from a shell whose PATH
    lacks the venv (the server's ``uvicorn`` is found all the same); its URL once it answers."""
    port = free_port()
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if Path(d) != BIN)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "-C", str(ROOT), "serve", f"MODEL={registered(planted)}", f"PORT={port}"],
            env={**os.environ, "PATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with DIRECT.open(f"{url}/ping", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the model server did not answer within 2 minutes"
                time.sleep(0.5)
        yield url
    finally:
        stop(server)


def test_the_served_model_answers_as_predict_does(planted, new_recordings, served, tmp_path):
    db, uri = new_recordings / "cage02_juvenile.sqlite", registered(planted)
    cli("predict", str(db), "--model", uri, "--out", str(tmp_path / "p.csv"), cwd=planted)
    expected = pd.read_csv(tmp_path / "p.csv")
    _, trained = load_model(uri)
    params = load_params(planted / "params.yaml")
    _, X = recording_stacks(db, trained.model_copy(update={"lmt": params.lmt}), params.room.timezone)
    request = urllib.request.Request(
        f"{served}/invocations",
        data=json.dumps({"inputs": X.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with DIRECT.open(request, timeout=60) as answer:
        served_rows = pd.DataFrame(json.loads(answer.read())["predictions"])
    assert served_rows["predicted"].tolist() == expected["predicted"].tolist()
    p = [c for c in expected.columns if c.startswith("p_")]
    np.testing.assert_allclose(served_rows[p].to_numpy(), expected[p].to_numpy(), atol=1e-6)
