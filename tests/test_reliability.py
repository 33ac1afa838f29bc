"""Nothing lost, nothing half-written, every run repeatable; the environment failing says so clearly.

The raw recordings are hashed around a full run of the demo pipeline (4 cages), which
runs twice to give byte-identical stops, stacks, models and metrics. A tracking server
that cannot be reached, a full disk and Ctrl-C in preprocessing or tuning each end with
one clear line, the previous outputs intact, no temporary file left, no MLflow run left
RUNNING, and a re-run that completes (resuming its Optuna studies).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from helpers.cohort import BIN, FAST, TINY_CNN, small_params, tiny_project
from helpers.lmt_files import track, write_lmt

from lmt_stereotype.errors import InputError, OutputError, ServiceError
from lmt_stereotype.tracking import check_reachable

OUTPUTS = ("data/interim", "data/processed", "models", "reports")


def cli(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "lmt-stereotype", *args], cwd=cwd, capture_output=True, text=True, **kwargs)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def digests(folder: Path, *parts: str) -> dict[str, str]:
    """sha256 of every file under ``folder/part``, by path relative to ``folder``."""
    files = sorted(p for part in parts for p in (folder / part).rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def leftovers(folder: Path) -> list[Path]:
    """Temporary files or folders of the atomic writers (``.NAME.*.tmp``, ``.NAME.old``)."""
    return [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def runs(experiment: str):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return mlflow.search_runs(experiment_names=[experiment], order_by=["start_time DESC"])


def copy_project(source: Path, target: Path, params: dict, outputs: bool = True) -> Path:
    """``source``'s raw recordings (hard links: the same files) and outputs, with its parameters changed."""
    shutil.copytree(source / "data/raw", target / "data/raw", copy_function=os.link)
    if outputs:
        for part in OUTPUTS:
            shutil.copytree(source / part, target / part)
    small_params(target, n_cages=4, sections=params)
    return target


DEMO = {**FAST, "registry": {"model_name": "reliability-demo"}, "mlflow": {"experiment": "reliability-demo"}}


@pytest.fixture(scope="module")
def demo(module_tmp) -> dict:
    """The demo pipeline on 4 simulated cages (balanced folds need 2 of each sex), run in two folders on
    the same raw files."""
    a, b = module_tmp.mktemp("run_a"), module_tmp.mktemp("run_b")
    small_params(a, n_cages=4, sections=DEMO)
    ok(cli("simulate", cwd=a))
    raw_before = digests(a, "data/raw")
    copy_project(a, b, DEMO, outputs=False)
    for folder in (a, b):
        for stage in ("preprocess", "train", "baselines"):
            ok(cli(stage, cwd=folder))
    return {"a": a, "b": b, "raw_before": raw_before}


@pytest.mark.slow
def test_a_full_run_leaves_the_raw_recordings_byte_for_byte_as_they_were(demo):
    after = digests(demo["a"], "data/raw")
    assert after == demo["raw_before"] and len(after) == 8 + 8 + 2  # recordings, planted stops, manifest, json
    assert not [p for p in (demo["a"] / "data/raw").iterdir() if p.name.endswith(("-journal", "-wal", "-shm"))]


@pytest.mark.slow
def test_the_same_seed_and_inputs_give_identical_stops_stacks_models_and_metrics(demo):
    a, b = digests(demo["a"], *OUTPUTS), digests(demo["b"], *OUTPUTS)
    assert a == b
    for name in (
        "data/interim/stops/recordings.csv",
        "data/interim/stops/cage01_adult.parquet",
        "data/processed/stacks.npz",
        "models/cnn/final.npz",
        "reports/histograms.json",
        "reports/cnn.json",
        "reports/knn.json",
        "reports/svm.json",
    ):
        assert name in a


# --- Ctrl-C ------------------------------------------------------------------------------------------


def interrupt(proc: subprocess.Popen, ready, timeout: float = 120) -> tuple[int, str]:
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group) once ``ready()``; exit code, stderr."""
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() - start < timeout, "never got ready"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr


def started(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "lmt-stereotype", *args], cwd=cwd, start_new_session=True, stderr=subprocess.PIPE, text=True
    )


INTERRUPTED = (
    "interrupted (SIGINT): nothing is half-written, every output is its previous or its new version; "
    "run the command again to finish"
)


@pytest.mark.slow
def test_ctrl_c_in_preprocessing_keeps_the_previous_outputs_and_a_rerun_completes(demo, tmp_path):
    changed = {**DEMO, "stops": {"min_duration_s": 1.5}, "mlflow": {"experiment": "reliability-interrupt"}}
    project = copy_project(demo["a"], tmp_path, changed)
    before = digests(project, *OUTPUTS)
    proc = started(["preprocess", "--workers", "1"], project)

    def one_recording_done() -> bool:  # in the middle of the stops stage: 1 of 8 recordings written
        written = [p for tmp in (project / "data/interim").glob(".stops.*.tmp") for p in tmp.glob("*.parquet")]
        return bool(written)

    code, stderr = interrupt(proc, one_recording_done)
    assert code == 130 and stderr.strip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in stderr
    assert digests(project, *OUTPUTS) == before and not leftovers(project)
    killed = runs("reliability-interrupt")
    assert sorted(killed["tags.mlflow.runName"]) == ["preprocess", "stops"]
    assert set(killed["status"]) == {"KILLED"}
    ok(cli("preprocess", cwd=project))
    after = digests(project, *OUTPUTS)
    assert after["data/processed/stacks.npz"] != before["data/processed/stacks.npz"]  # now with 1.5-s stops
    assert "RUNNING" not in set(runs("reliability-interrupt")["status"]) and not leftovers(project)


FINISHED = ("COMPLETE", "PRUNED")


def trial_table(storage: str) -> dict[str, list[tuple]]:
    """Every study's trials: (number, state, params, value)."""
    return {
        s.study_name: [
            (t.number, t.state.name, t.params, t.value)
            for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
        ]
        for s in optuna.get_all_study_summaries(storage)
    }


@pytest.mark.slow
def test_ctrl_c_in_tuning_keeps_the_previous_model_and_the_rerun_resumes_the_studies(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tuning = {"n_trials": 3, "inner_folds": 2, "storage": storage, "space": {"epochs": [15, 25]}}
    tiny_project(
        tmp_path,
        {
            "cnn": {**TINY_CNN, "epochs": 20},
            "tuning": tuning,
            "registry": {"model_name": "reliability-tuning"},
            "mlflow": {"experiment": "reliability-tuning"},
        },
    )
    for previous in ("models/cnn/final.npz", "reports/cnn.json", "reports/registered_model.json"):  # a former run's
        (tmp_path / previous).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / previous).write_text(f"previous {previous}\n")
    before = digests(tmp_path, *OUTPUTS)
    proc = started(["train"], tmp_path)

    def a_trial_done() -> bool:
        try:
            with closing(sqlite3.connect(f"file:{tmp_path / 'optuna.db'}?mode=ro", uri=True)) as con:
                return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] > 0
        except sqlite3.Error:  # not created yet
            return False

    code, stderr = interrupt(proc, a_trial_done)
    assert code == 130 and stderr.strip().splitlines()[-1] == INTERRUPTED
    assert digests(tmp_path, *OUTPUTS) == before and not leftovers(tmp_path)
    (train,) = runs("reliability-tuning").itertuples()
    assert train.status == "KILLED"
    interrupted = trial_table(storage)
    unfinished = {n for n, trials in interrupted.items() if sum(t[1] in FINISHED for t in trials) < 3}
    assert any(t[1] in FINISHED for n in unfinished for t in interrupted[n])  # a study cut short, to resume

    ok(cli("train", cwd=tmp_path))
    resumed = trial_table(storage)
    assert len(resumed) == 3 + 1 and interrupted.keys() <= resumed.keys()  # a study per outer fold, and the final
    for name, trials in interrupted.items():  # resumed, not restarted: the finished trials kept, only the rest run
        kept = [t for t in trials if t[1] in FINISHED]
        done = [t for t in resumed[name] if t[1] in FINISHED]
        assert done[: len(kept)] == kept and len(done) == 3
    assert digests(tmp_path, "models")["models/cnn/final.npz"] != before["models/cnn/final.npz"]
    assert set(runs("reliability-tuning")["status"]) == {"FINISHED", "KILLED"} and not leftovers(tmp_path)


# --- a full disk -------------------------------------------------------------------------------------


def small_disk(limit: int):
    """preexec_fn: files may not grow past ``limit`` bytes, as on a full disk (write fails with EFBIG)."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limit_file_size


def test_a_full_disk_while_writing_an_output_is_one_line_and_keeps_the_previous_file(tmp_path):
    x, y = track([("move", 0.5, 20, 0), ("stay", 1.5, 0, 0), ("move", 0.5, -20, 0), ("stay", 1.5, 0, 0)] * 60)
    db = write_lmt(tmp_path / "r.sqlite", {1: (np.arange(len(x)), x, y)})
    out = tmp_path / "stops.csv"
    out.write_text("previous\n")
    args = ("stop-table", str(db), "--out", str(out), "-p", str(Path(__file__).parents[1] / "params.yaml"))
    proc = cli(*args, cwd=tmp_path, preexec_fn=small_disk(4096))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {out}: cannot be written: file too large (a file-size limit or a full file system); "
        "the previous version is kept"
    ]
    assert out.read_text() == "previous\n" and not leftovers(tmp_path)
    ok(cli(*args, cwd=tmp_path))  # with room again
    assert out.stat().st_size > 4096


WRITE_STOPS = """
import sys
from lmt_stereotype.config import load_params
from lmt_stereotype.errors import OutputError
from lmt_stereotype.stops import detect_cohort_stops
p = load_params("params.yaml")
try:
    detect_cohort_stops(p.data.manifest, p.data.stops, p.lmt, p.stops, workers=2)
except OutputError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_full_disk_while_writing_the_cohort_stops_keeps_the_previous_folder(demo, tmp_path):
    project = copy_project(demo["a"], tmp_path, DEMO)
    before = digests(project, *OUTPUTS)
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_STOPS], cwd=project, capture_output=True, text=True, preexec_fn=small_disk(16_384)
    )
    assert proc.returncode == 3, proc.stderr  # raised in a worker process, it reaches the parent as itself
    assert ".parquet: cannot be written: file too large" in proc.stdout
    assert digests(project, *OUTPUTS) == before and not leftovers(project)


# --- the MLflow tracking server ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_tracking_server_is_one_line_in_seconds_not_minutes_of_retries(tmp_path):
    small_params(tmp_path, n_cages=2)
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    proc = cli("stops", cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, timeout=60)
    assert time.monotonic() - start < 20
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {uri}: MLflow tracking server cannot be reached (") and "refused" in line
    assert not (tmp_path / "data").exists()


@pytest.fixture
def http_server() -> Iterator[Callable[[int], str]]:
    """A local HTTP server answering /health with a chosen status."""
    answer = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(answer["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(status: int) -> str:
        answer["status"] = status
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    server.shutdown()


def test_a_server_that_does_not_answer_as_mlflow_is_named_and_one_that_does_passes(http_server):
    check_reachable(http_server(200))
    check_reachable(http_server(401))  # there, but wants credentials: MLflow sends them
    with pytest.raises(ServiceError, match=r"does not answer as an MLflow tracking server \(GET /health: HTTP 404\)"):
        check_reachable(http_server(404))
    check_reachable("sqlite:///nowhere/mlflow.db")  # a file store needs no server


@pytest.mark.parametrize(
    "error", [InputError("r.sqlite", "not an SQLite database"), OutputError("s.csv", "cannot be written: full")]
)
def test_errors_survive_the_trip_from_a_worker_process(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error) and back.path == error.path
    assert back.exit_code == error.exit_code
