"""simulate -> stops -> stacks, end to end, through the CLI, MLflow and DVC."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers.cohort import BIN, FAST, ROOT, cli, small_params

from lmt_stereotype.config import load_params
from lmt_stereotype.histograms import Stacks, stack_window
from lmt_stereotype.simulation.behaviour import effect_coefficients
from lmt_stereotype.simulation.cohort import IN_PROGRESS
from lmt_stereotype.stops import detect_cohort_stops


@pytest.fixture(scope="module")
def demo(module_tmp) -> Path:
    """A 4-cage demo cohort (2 male, 2 female cages, both ages) run through the CLI."""
    folder = module_tmp.mktemp("demo")
    small_params(folder, n_cages=4)
    cli("simulate", cwd=folder)
    cli("preprocess", cwd=folder)
    return folder


@pytest.mark.slow
def test_the_pipeline_writes_one_stack_per_mouse_recording(demo):
    stacks = Stacks.load(demo / "data/processed/stacks.npz")
    manifest = pd.read_csv(demo / "data/raw/manifest.csv")
    assert stacks.X.shape == (len(manifest), 12, 30, 30) == (4 * 2 * 4, 12, 30, 30)
    assert sorted(set(stacks.label)) == ["AF", "AM", "JF", "JM"]
    assert len(set(stacks.cage)) == 4
    counts = json.loads((demo / "reports/histograms.json").read_text())
    assert counts["n_stops_in_window"] == stacks.X.sum()
    summary = pd.read_csv(demo / "data/interim/stops/recordings.csv")
    assert len(summary) == 8 and summary["covering_index"].all()


@pytest.mark.slow
def test_stops_resolves_the_cohort_once_and_histograms_never_opens_the_raw_recordings(demo, tmp_path):
    samples = pd.read_csv(demo / "data/interim/samples.csv", dtype={"rfid": str})
    manifest = pd.read_csv(demo / "data/raw/manifest.csv", dtype=str)
    assert samples["recording"].tolist() == manifest["recording"].tolist()
    assert {"animal_id", "rfid", "cage", "sex", "age", "genotype", "start_hour", "seconds_per_hour"} <= set(samples)
    assert samples["rfid"].str.startswith("0000041").all()  # read as text: leading zeros kept
    truth = json.loads((demo / "data/raw/simulation.json").read_text())
    starts = samples["recording"].map({r["recording"]: r["start_hour"] for r in truth["recordings"]})
    assert np.allclose(samples["start_hour"], starts) and samples["start_hour"].nunique() > 1, "each its own start"
    assert (samples["seconds_per_hour"] == 30.0).all()  # the simulator's clock
    project = tmp_path / "project"
    shutil.copytree(demo, project, ignore=shutil.ignore_patterns("raw"))
    assert not (project / "data/raw").exists()
    cli("histograms", cwd=project)
    again = Stacks.load(project / "data/processed/stacks.npz")
    assert np.array_equal(again.X, Stacks.load(demo / "data/processed/stacks.npz").X)


@pytest.mark.slow
def test_reading_recordings_in_one_process_or_several_gives_the_same_stops(demo, tmp_path):
    params = load_params(demo / "params.yaml")
    manifest = demo / "data/raw/manifest.csv"
    one = detect_cohort_stops(manifest, tmp_path / "one", params.lmt, params.stops, workers=1)
    two = detect_cohort_stops(manifest, tmp_path / "two", params.lmt, params.stops, workers=2)
    pd.testing.assert_frame_equal(one, two)
    for name in sorted(p.name for p in (tmp_path / "one").iterdir()):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
        assert (tmp_path / "one" / name).read_bytes() == (demo / "data/interim/stops" / name).read_bytes(), name


@pytest.mark.slow
def test_each_stack_sums_to_its_stops_inside_the_time_window(demo):
    """The window starts at 12:00 on the simulator's clock, 0 to 2 of its hours after the first frame."""
    stacks = Stacks.load(demo / "data/processed/stacks.npz")
    histograms = load_params(demo / "params.yaml").histograms
    samples = pd.read_csv(demo / "data/interim/samples.csv").set_index("sample")
    window_s = 12 * stacks.interval_s
    for k in (0, 13, 31):
        rec, animal = stacks.sample[k].rsplit(":", 1)
        window = stack_window(samples.at[stacks.sample[k], "start_hour"], 30.0, histograms, rec)
        assert stacks.start_hour[k] == 12 and 0 <= window.offset_s <= stacks.interval_s
        stops = pd.read_parquet(demo / f"data/interim/stops/{rec}.parquet")
        start = stops.start_s - window.offset_s
        mine = stops[(stops.animal_id == int(animal)) & (start >= 0) & (start < window_s)]
        assert stacks.X[k].sum() == len(mine) > 50


def region_share(stacks: Stacks, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Share of each mouse-recording's stops whose tile centre lies in the rectangle (cm)."""
    centres = (np.arange(30) + 0.5) * 50 / 30
    cols = (centres >= x0) & (centres <= x1)
    rows = (centres >= y0) & (centres <= y1)
    per_tile = stacks.X.sum(axis=1)
    return per_tile[:, rows][:, :, cols].sum(axis=(1, 2)) / per_tile.sum(axis=(1, 2))


@pytest.mark.slow
def test_the_demo_cohort_shows_its_planted_effects(demo):
    """Each planted effect shows where it was planted: the classes that carry it fully stop there over
    1.3 times as often as every class without it; juvenile males, who carry half of the male and half
    of the juvenile effect (``juvenile_male_mix`` 0.5), lie between the two."""
    stacks = Stacks.load(demo / "data/processed/stacks.npz")
    regions = {
        "female_house": (0, 14, 0, 14),
        "male_lower_border": (25, 46, 45, 50),
        "juvenile_centre": (17, 33, 17, 33),
    }
    mix = load_params(demo / "params.yaml").simulate.effects.juvenile_male_mix
    for effect, carriers in effect_coefficients(mix).items():
        share = region_share(stacks, *regions[effect])
        mean = {c: share[stacks.label == c].mean() for c in ("AM", "JM", "AF", "JF")}
        full = [c for c in mean if carriers.get(c) == 1.0]
        half = [c for c in mean if 0 < carriers.get(c, 0) < 1]
        without = max(mean[c] for c in mean if c not in carriers)
        assert min(mean[c] for c in full) > 1.3 * without, (effect, mean)
        assert all(without < mean[c] < min(mean[f] for f in full) for c in half), (effect, mean)


@pytest.mark.slow
def test_each_stage_is_an_mlflow_run(demo):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["lmt-stereotype"])
    stages = set(runs["tags.stage"])
    assert {"simulate", "preprocess", "stops", "histograms"} <= stages
    histo = runs[runs["tags.stage"] == "histograms"].iloc[0]
    assert histo["status"] == "FINISHED" and histo["metrics.n_samples"] == 32
    assert histo["params.histograms.grid"] == "30"


@pytest.mark.slow
def test_simulate_keeps_an_up_to_date_cohort_and_never_overwrites_real_data(demo, tmp_path):
    before = (demo / "data/raw/manifest.csv").stat().st_mtime_ns
    proc = cli("simulate", cwd=demo)
    assert "up to date" in proc.stderr
    assert (demo / "data/raw/manifest.csv").stat().st_mtime_ns == before
    real = tmp_path / "data/raw"
    real.mkdir(parents=True)
    (real / "manifest.csv").write_text("recording,animal,cage,sex,age\n")
    shutil.copy(demo / "params.yaml", tmp_path / "params.yaml")
    proc = subprocess.run([BIN / "lmt-stereotype", "simulate"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "not simulated" in proc.stderr
    assert (real / "manifest.csv").read_text() == "recording,animal,cage,sex,age\n"


@pytest.mark.slow
def test_an_interrupted_simulation_is_finished_by_the_next_run(tmp_path):
    """Recordings without simulation.json are refused as possibly real, unless the simulator's own
    in-progress marker says an interrupted simulation wrote them."""
    small_params(tmp_path, n_cages=2)
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    (raw / "cage01_adult.sqlite").write_bytes(b"half")
    (raw / IN_PROGRESS).touch()
    proc = cli("simulate", cwd=tmp_path)
    assert "finishing an interrupted simulation" in proc.stderr
    assert (raw / "simulation.json").exists() and not (raw / IN_PROGRESS).exists()
    assert (raw / "cage01_adult.sqlite").stat().st_size > 1_000_000


@pytest.mark.slow
def test_dvc_repro_runs_the_stages_and_leaves_a_clean_status(tmp_path):
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith("data/"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    small_params(tmp_path, n_cages=4, sections=FAST)  # balanced folds need 2 cages of each sex
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    run = lambda *a: subprocess.run(a, cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    assert run("git", "init", "-q").returncode == 0
    cli("simulate", cwd=tmp_path)
    repro = run("dvc", "repro")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    status = run("dvc", "status", "--quiet")
    assert status.returncode == 0, status.stdout
    metrics = json.loads(run("dvc", "metrics", "show", "--json").stdout)
    shown = next(iter(metrics.values()))["data"]
    assert "n_stops_in_window" in shown["reports/histograms.json"]["data"]
    for model in ("cnn", "knn", "svm"):  # the comparison, side by side under the same keys, balanced first
        assert list(shown[f"reports/{model}.json"]["data"]) == ["balanced", "loco", "kfold"]
        assert 0 <= shown[f"reports/{model}.json"]["data"]["balanced"]["accuracy"] <= 1
    table = run("dvc", "metrics", "show").stdout
    first = table.index("balanced.accuracy")  # dvc sorts its columns by name: balanced, then kfold, then loco
    assert first < table.index("kfold.accuracy") < table.index("loco.accuracy")
    plots = run("dvc", "plots", "show", "--json")
    assert plots.returncode == 0 and "confusion_balanced" in plots.stdout
    assert Stacks.load(tmp_path / "data/processed/stacks.npz").X.shape[0] == 32
    explained = tmp_path / "reports/explain"  # 4 channels per branch, 4 cages: a held-out model for each
    assert {p.name for p in (explained / "final").glob("activation_k*_ch*.png")} == {
        f"activation_k{k}_ch{c:02d}.png" for k in (3, 5) for c in range(4)
    }
    assert len(list((explained / "held_out").glob("activation_k*_cage*.png"))) == 2 * 4
    assert len(list((explained / "mice").glob("*.png"))) == 4  # one mouse of each class
    with np.load(explained / "final/maps.npz") as maps:
        assert maps["activation_k3"].shape == (4, 4, 14, 14) and maps["ig_time"].shape == (4, 12)
    sample = str(Stacks.load(tmp_path / "data/processed/stacks.npz").sample[5])
    cli("explain", "--mouse", sample, "--out", "mouse.png", cwd=tmp_path)  # the paper's Figure 1, any mouse
    assert (tmp_path / "mouse.png").stat().st_size > 10_000
    page = (tmp_path / "reports/report/index.html").read_text()  # the results page, a stage too
    assert "PCA + SVM" in page and "Left: the paper's Table 1" in page
    assert (tmp_path / "reports/report/confusion_matrices.png").exists()
    # README: share the data through a DVC remote, and the MLflow `main` entry point
    assert run("dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")).returncode == 0
    push = run("dvc", "push")
    assert push.returncode == 0, push.stderr
    assert sum(1 for p in (tmp_path / "remote").rglob("*") if p.is_file()) > 40  # recordings, stops, stacks, models
    main = run("mlflow", "run", ".", "-e", "main", "--experiment-name", "lmt-stereotype", "--env-manager", "local")
    assert main.returncode == 0, main.stderr[-2000:]
    assert "Data and pipelines are up to date" in main.stdout + main.stderr


def test_simulate_refuses_histograms_that_do_not_cover_the_simulated_recording(tmp_path):
    small_params(tmp_path, n_cages=2, sections={"histograms": {"n_intervals": 72, "interval_s": 180}})
    proc = subprocess.run([BIN / "lmt-stereotype", "simulate"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "params.yaml" in proc.stderr and "72 x 180 s" in proc.stderr and "2160 s" in proc.stderr
    assert not (tmp_path / "data/raw").exists()
