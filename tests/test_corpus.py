"""The bad-input corpus: every bad or odd input gets a clear answer through `lmt-stereotype`.

One case per input. A refused input exits with code 2 and one line on stderr naming the
file (and the manifest row or parameter key) and the problem, without a traceback; an
odd but usable input gets the handling documented where it lives (``lmt``, ``manifest``,
``histograms``), checked against a clean recording. The environment (MLflow server, full
disk, Ctrl-C) is in ``test_reliability.py``. Cases another test already covers are in
:data:`COVERED_ELSEWHERE`, with that test.
"""

from __future__ import annotations

import ast
import ctypes
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cohort import BIN, ROOT, small_params
from helpers.lmt_files import ANIMAL_VARIANTS, BAD_FILES, GEOMETRY, still_track, track, write_lmt
from helpers.params import DEMO, varied

import lmt_stereotype.lmt as lmt
from lmt_stereotype.errors import InputError
from lmt_stereotype.histograms import Stacks, stop_histograms
from lmt_stereotype.stops import recording_stops

PARAMS = ROOT / "params.yaml"


def cli(*args: str, cwd: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "lmt-stereotype", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def assert_refused(proc: subprocess.CompletedProcess, *names: object, code: int = 2) -> str:
    """Exit ``code``, no traceback, and a last line ``error: ...`` holding every one of ``names``."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr
    for name in names:
        assert str(name) in line, line
    return line


def stops_of(db: Path, tmp_path: Path) -> tuple[pd.DataFrame, list[str]]:
    """`lmt-stereotype stop-table DB --out`: the table it wrote and what it said besides its summary line."""
    out = tmp_path / f"{db.stem}-stops.parquet"
    proc = cli("stop-table", str(db), "--out", str(out), "-p", str(PARAMS), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    said = [line for line in proc.stderr.strip().splitlines() if not line.startswith("stop_table: ")]
    return pd.read_parquet(out), said


def reference(db: Path) -> pd.DataFrame:
    """The stops the reader finds in ``db``, in this process."""
    return recording_stops(db, GEOMETRY, DEMO.stops)[0]


# --- recordings refused: exit code 2, the file and the problem -------------------------------------


def _sql(db: Path, script: str) -> Path:
    con = sqlite3.connect(db)
    con.executescript(script)
    con.commit()
    con.close()
    return db


def _recording(tmp: Path, name: str = "r.sqlite", script: str = "", **kwargs) -> Path:
    """Two mice: one still for 3 s, one still for 5 s (a stop each)."""
    db = write_lmt(tmp / name, {1: still_track(3), 2: still_track(5, start_frame=10)}, **kwargs)
    return _sql(db, script) if script else db


def _truncated_mid_page(tmp: Path, header_size: bool) -> Path:
    data = bytearray(write_lmt(tmp / "whole.sqlite", {1: still_track(60)}).read_bytes())
    if not header_size:  # writers before SQLite 3.7.0 do not keep the page count valid in the header
        data[92:96] = b"\0\0\0\0"
    bad = tmp / "cut.sqlite"
    bad.write_bytes(bytes(data[: len(data) // 2 + 1234]))
    return bad


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.sqlite")
    return tmp / "pipe.sqlite"


def _directory(tmp: Path) -> Path:
    (tmp / "folder.sqlite").mkdir()
    return tmp / "folder.sqlite"


REFUSED_RECORDINGS: dict[str, tuple[Callable[[Path], Path], str]] = {
    **{name: BAD_FILES[name] for name in BAD_FILES},  # empty, text file, truncated at a page boundary, ...
    "truncated mid-page": (lambda t: _truncated_mid_page(t, True), "truncated SQLite database"),
    "truncated, page count not in the header": (
        lambda t: _truncated_mid_page(t, False),
        "corrupt or truncated SQLite database",
    ),
    "a directory named .sqlite": (_directory, "is a directory"),
    "a FIFO named .sqlite (would block a reader)": (_fifo, "is not a regular file"),
    "no frame at all": (lambda t: _recording(t, script="DELETE FROM DETECTION; DELETE FROM FRAME;"), "no frames"),
    "ANIMAL without its ID column": (
        lambda t: _recording(t, script="DROP TABLE ANIMAL; CREATE TABLE ANIMAL (RFID TEXT, NAME TEXT);"),
        "table ANIMAL lacks column(s) ID",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", REFUSED_RECORDINGS)
def test_a_bad_recording_is_refused_with_exit_code_2_naming_the_file_and_the_problem(tmp_path, case):
    make, problem = REFUSED_RECORDINGS[case]
    path = make(tmp_path)
    out = tmp_path / "stops.csv"
    proc = cli("stop-table", str(path), "--out", str(out), "-p", str(PARAMS), cwd=tmp_path, timeout=60)
    assert_refused(proc, path, problem)
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert not out.exists()


def test_a_recording_locked_by_its_writer_is_refused_after_a_short_wait(tmp_path, monkeypatch):
    """The tracker still writing: opening waits ``BUSY_TIMEOUT_S`` (5 s; 0.2 s here) for the lock, then says so."""
    db = _recording(tmp_path)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE FRAME SET TIMESTAMP = 0")
    monkeypatch.setattr(lmt, "BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(InputError) as err:
            reference(db)
        assert err.value.path == db and "locked by another process" in err.value.problem
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert len(reference(db)) == 2  # once the writer is done, it reads


def _without_root_powers() -> None:
    """preexec_fn: as root, give up reading past file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone for good after exec
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def unreadable(tmp_path) -> Path:
    """A recording nobody may read (mode 000); a root without droppable capabilities skips."""
    path = _recording(tmp_path, "locked-away.sqlite")
    path.chmod(0)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(path)!r}, 'rb')"], preexec_fn=_without_root_powers, capture_output=True
        )
    except subprocess.SubprocessError:
        probe = None
    if probe is None or probe.returncode == 0:
        pytest.skip("running as root whose file-permission override cannot be dropped: mode 000 does not stop it")
    return path


@pytest.mark.slow
def test_an_unreadable_recording_is_refused_with_exit_code_2(unreadable, tmp_path):
    proc = cli("stop-table", str(unreadable), "-p", str(PARAMS), cwd=tmp_path, preexec_fn=_without_root_powers)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"error: {unreadable}: cannot be read (permission denied)\n"  # one line, ours


@pytest.mark.slow
def test_an_unreadable_recording_of_the_cohort_is_named_by_the_reader(unreadable, tmp_path):
    project = tmp_path / "project"
    (project / "data/raw").mkdir(parents=True)
    small_params(project, n_cages=2)
    os.link(unreadable, project / "data/raw/locked-away.sqlite")
    (project / "data/raw/manifest.csv").write_text("recording,animal,cage,sex,age\nlocked-away.sqlite,1,c1,F,adult\n")
    proc = cli("stops", cwd=project, preexec_fn=_without_root_powers)
    assert_refused(proc, "locked-away.sqlite", "cannot be read (permission denied)")


# --- recordings read as documented: the same stops as a clean recording, or an empty table with a warning ----


def _without(script: str) -> Callable[[Path], Path]:
    return lambda t: _recording(t, "reference.sqlite", script)


def _clean(t: Path) -> Path:
    return _recording(t, "reference.sqlite")


SKIP_ROWS = "ANIMALID IS NOT NULL AND (ID % 9 = 4 OR ID % 11 = 5 OR ID % 13 = 6)"

HANDLED_RECORDINGS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path]]] = {
    # case: (the odd recording, a recording that must give exactly the same stops)
    "NULL coordinates are missing detections": (
        lambda t: _recording(
            t,
            script="UPDATE DETECTION SET MASS_X = NULL WHERE ID % 9 = 4;"
            "UPDATE DETECTION SET MASS_Y = NULL WHERE ID % 11 = 5 OR ID % 13 = 6;",
        ),
        _without(f"DELETE FROM DETECTION WHERE {SKIP_ROWS};"),
    ),
    "NaN (stored as text) and infinite coordinates are missing detections": (
        lambda t: _recording(
            t,
            script="UPDATE DETECTION SET MASS_X = 'NaN' WHERE ID % 9 = 4;"
            "UPDATE DETECTION SET MASS_Y = 'nan' WHERE ID % 11 = 5;"
            "UPDATE DETECTION SET MASS_X = 9e999 WHERE ID % 13 = 6;",
        ),
        _without(f"DELETE FROM DETECTION WHERE {SKIP_ROWS};"),
    ),
    "a frame number that is not a number is a missing detection": (
        lambda t: _recording(t, script="UPDATE DETECTION SET FRAMENUMBER = 'f' || FRAMENUMBER WHERE ID % 9 = 4;"),
        _without("DELETE FROM DETECTION WHERE ID % 9 = 4;"),
    ),
    "MASS_X below 10 is tracking junk, dropped": (
        lambda t: _recording(
            t,
            script="INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) "
            "SELECT FRAMENUMBER, ANIMALID, 3.5, MASS_Y + 40, DATA FROM DETECTION WHERE ID % 4 = 0;",
        ),
        _clean,
    ),
    "duplicated frames count once": (
        lambda t: _recording(
            t,
            script="INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) "
            "SELECT FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA FROM DETECTION WHERE ID % 3 = 0;",
        ),
        _clean,
    ),
    "FRAME timestamps going backwards change nothing (frame numbers are the clock)": (
        lambda t: _recording(t, script="UPDATE FRAME SET TIMESTAMP = TIMESTAMP - 60000 WHERE FRAMENUMBER % 50 > 25;"),
        _clean,
    ),
    "EVENT without METADATA is read": (lambda t: _recording(t, event_metadata=False), _clean),
    "ANIMAL with 3 columns is read": (lambda t: _recording(t, animal_columns=ANIMAL_VARIANTS[0]), _clean),
    "ANIMAL with 9 columns is read": (lambda t: _recording(t, animal_columns=ANIMAL_VARIANTS[-1]), _clean),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", HANDLED_RECORDINGS)
def test_an_odd_recording_gives_exactly_the_stops_of_its_clean_equivalent(tmp_path, case):
    make, make_reference = HANDLED_RECORDINGS[case]
    table, said = stops_of(make(tmp_path), tmp_path)
    expected = reference(make_reference(tmp_path))
    assert len(expected) == 2  # both mice's stops survive
    pd.testing.assert_frame_equal(table, expected)
    assert said == []  # nothing to warn about


@pytest.mark.parametrize(
    "case, script, warned",
    [
        ("only anonymous detections", "UPDATE DETECTION SET ANIMALID = NULL;", ["animal 1 has no", "animal 2 has no"]),
        ("an animal with no detections", "DELETE FROM DETECTION WHERE ANIMALID = 2;", ["animal 2 has no"]),
        (
            "an animal with only junk detections",
            "UPDATE DETECTION SET MASS_X = 2 WHERE ANIMALID = 2;",
            ["animal 2 has no"],
        ),
        ("an empty ANIMAL table", "DELETE FROM ANIMAL;", ["the ANIMAL table is empty"]),
    ],
)
@pytest.mark.slow
def test_a_recording_where_a_mouse_was_never_seen_warns_and_gives_that_mouse_no_stops(tmp_path, case, script, warned):
    db = _recording(tmp_path, script=script, anonymous=200)
    table, said = stops_of(db, tmp_path)
    expected = reference(_recording(tmp_path, "reference.sqlite", anonymous=200))
    seen = expected[expected["animal_id"].isin(table["animal_id"].unique())].reset_index(drop=True)
    if len(seen):
        pd.testing.assert_frame_equal(table, seen)  # the mice that were seen keep their stops
    else:
        assert table.empty and list(table.columns) == list(expected.columns)
    assert len(said) == len(warned) and all(line.startswith(f"{db}: ") for line in said)
    for text in warned:  # in any order: the animals are read in threads
        assert sum(text in line for line in said) == 1, said


def test_coordinates_outside_the_arena_are_kept_and_the_stack_clips_them_to_the_border_tile(tmp_path):
    frames, x, y = still_track(3)
    db = write_lmt(tmp_path / "r.sqlite", {1: (frames, x - 18, y + 50)})  # a stop at (7, 60) cm, off the bottom
    (stop,) = stops_of(db, tmp_path)[0].itertuples()
    assert (stop.x_cm, stop.y_cm) == pytest.approx((7.0, 60.0))
    stack = stop_histograms(
        [stop.start_s], [stop.x_cm], [stop.y_cm], varied(DEMO.histograms, n_intervals=1, interval_s=3600), 50.0
    )
    assert stack[0, 29, 4] == 1 == stack.sum()  # bottom row, the column of x = 7 cm


# --- the cohort: odd but allowed, through `lmt-stereotype preprocess` ------------------------------------


def _quirky_track(segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = track(segments)
    return np.arange(len(x)), x, y


@pytest.fixture(scope="module")
def quirky(module_tmp) -> tuple[Path, subprocess.CompletedProcess]:
    """A cage of both sexes recorded 5 s, a cage of one mouse recorded 20 s; stacks of 2 x 4 s = 8 s.

    a.sqlite (cage c1): mice 1 (male) and 2 (female), a stop each at 1 s; shorter than the window.
    b.sqlite (cage c2, its only recording): one mouse, stops at 1 s, 5 s and 16 s; longer than the window.
    """
    project = module_tmp.mktemp("quirky")
    raw = project / "data/raw"
    raw.mkdir(parents=True)
    small_params(project, n_cages=2, sections={"histograms": {"n_intervals": 2, "interval_s": 4}})
    write_lmt(raw / "a.sqlite", {1: still_track(3), 2: still_track(3)})
    long = [("move", 1, 15, 0), ("stay", 3, 0, 0), ("move", 1, -15, 0), ("stay", 10, 0, 0)]
    write_lmt(raw / "b.sqlite", {1: _quirky_track([*long, ("move", 1, 15, 0), ("stay", 3, 0, 0), ("move", 1, 0, 15)])})
    (raw / "manifest.csv").write_text(
        "recording,animal,cage,sex,age\na.sqlite,1,c1,M,adult\na.sqlite,2,c1,F,adult\nb.sqlite,1,c2,F,juvenile\n"
    )
    proc = cli("preprocess", cwd=project)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return project, proc


def _stack(project: Path, sample: str) -> np.ndarray:
    stacks = Stacks.load(project / "data/processed/stacks.npz")
    return stacks.X[list(stacks.sample).index(sample)]


@pytest.mark.slow
def test_a_recording_shorter_than_the_window_is_padded_with_a_warning(quirky):
    project, proc = quirky
    said = "a.sqlite lasts 5.000 s (150 frames), 3.000 s (90 frames) short of its window of 2 x 4 s = 8 s from 12:00"
    assert said in proc.stderr and "padded, its last 0.75 of 2 intervals are empty" in proc.stderr
    stack = _stack(project, "a:1")
    assert stack[0].sum() == 1 and stack[1].sum() == 0


@pytest.mark.slow
def test_a_recording_longer_than_the_window_is_truncated_and_logged(quirky):
    project, proc = quirky
    assert "b.sqlite: truncated to its window of 2 x 4 s = 8 s from 12:00" in proc.stderr
    assert "0 stops before it and 1 after it left out" in proc.stderr
    assert "a.sqlite: truncated" not in proc.stderr, "nothing of a was cut"
    assert _stack(project, "b:1").sum() == 2
    counts = json.loads((project / "reports/histograms.json").read_text())
    assert counts["n_stops_after_window"] == 1 and counts["n_stops_in_window"] == 4


@pytest.mark.slow
def test_a_cage_holding_both_sexes_is_allowed_with_a_warning(quirky):
    project, proc = quirky
    assert "manifest.csv: cage c1 holds both sexes (rows 2, 3): allowed" in proc.stderr
    stacks = Stacks.load(project / "data/processed/stacks.npz")
    assert sorted(stacks.label[stacks.cage == "c1"]) == ["AF", "AM"]


@pytest.mark.slow
def test_a_cage_with_one_recording_is_allowed(quirky):
    project, _ = quirky
    stacks = Stacks.load(project / "data/processed/stacks.npz")
    assert stacks.sample[stacks.cage == "c2"].tolist() == ["b:1"]
    assert stacks.label[stacks.cage == "c2"].tolist() == ["JF"]


# --- the cohort refused: the manifest and its row ----------------------------------------------------


def _cohort(tmp: Path, manifest: str | None, script: str = "") -> Path:
    raw = tmp / "data/raw"
    raw.mkdir(parents=True)
    small_params(tmp, n_cages=2)
    _recording(raw, "a.sqlite", script)
    (raw / "b.sqlite").write_text("recording,animal\n" * 20)  # a text file named .sqlite
    if manifest is not None:
        (raw / "manifest.csv").write_text("recording,animal,cage,sex,age\n" + manifest)
    return tmp


REFUSED_COHORTS = {
    "no manifest": ("stops", None, "", ["manifest.csv", "manifest not found"]),
    "a recording of the manifest is missing": (
        "stops",
        "a.sqlite,1,c1,F,adult\nzz.sqlite,1,c2,F,adult\n",
        "",
        ["manifest.csv", "row 3: recording not found: zz.sqlite"],
    ),
    "a recording of the manifest is not SQLite (refused in a worker process)": (
        "stops",
        "a.sqlite,1,c1,F,adult\nb.sqlite,1,c2,F,adult\n",
        "",
        ["b.sqlite", "not an SQLite database"],
    ),
    "a mouse of the manifest has no stop at all": (
        "preprocess",
        "a.sqlite,1,c1,F,adult\na.sqlite,2,c1,F,adult\n",
        "DELETE FROM DETECTION WHERE ANIMALID = 2;",
        ["manifest.csv", "row 3: animal 2 of a.sqlite has no stop at all"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", REFUSED_COHORTS)
def test_a_bad_cohort_is_refused_with_exit_code_2_naming_the_manifest_row(tmp_path, case):
    command, manifest, script, names = REFUSED_COHORTS[case]
    project = _cohort(tmp_path, manifest, script)
    assert_refused(cli(command, cwd=project), *names)
    assert not list(project.glob("data/**/.*.tmp")) and not (project / "data/processed/stacks.npz").exists()


# --- covered by other tests -----------------------------------------------------------------------------

COVERED_ELSEWHERE = {
    "ANIMAL with each of 3 to 9 columns": "test_lmt.py::test_animal_table_with_3_to_9_columns",
    "an animal not in the database": "test_manifest.py::test_bad_manifest_rows_are_named",
    "unknown sex or age labels": "test_manifest.py::test_bad_manifest_rows_are_named",
    "duplicated manifest rows": "test_manifest.py::test_bad_manifest_rows_are_named",
    "a manifest value contradicting ANIMAL": "test_manifest.py::test_bad_manifest_rows_are_named",
    "a manifest without a needed column": "test_manifest.py::test_missing_column_is_named",
    "params.yaml: a wrong type, a negative threshold, a grid of zero, an unknown key": (
        "test_config.py::test_bad_parameter_is_named"
    ),
    "params.yaml refused by the command line with exit code 2": (
        "test_config.py::test_cli_refuses_bad_parameters_with_exit_code_2"
    ),
    "params.yaml missing or not YAML": "test_config.py::test_missing_or_broken_parameter_file",
    "histograms that do not cover the simulated recording": (
        "test_pipeline.py::test_simulate_refuses_histograms_that_do_not_cover_the_simulated_recording"
    ),
    "anonymous detections, duplicated rows, chunk sizes (properties)": (
        "test_stop_properties.py::"
        "test_anonymous_detections_duplicated_rows_chunk_size_and_threads_leave_the_stops_unchanged"
    ),
}


@pytest.mark.parametrize("case", COVERED_ELSEWHERE)
def test_a_case_covered_elsewhere_names_a_test_that_exists(case):
    module, name = COVERED_ELSEWHERE[case].split("::")  # read, not imported: test modules import no test module
    tests = ast.parse((Path(__file__).parent / module).read_text()).body
    assert name in {f.name for f in tests if isinstance(f, ast.FunctionDef)}, COVERED_ELSEWHERE[case]
