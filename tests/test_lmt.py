"""The reader accepts every variant of FORMAT.md and refuses bad files with a clear error."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.lmt_files import ANIMAL_VARIANTS, BAD_FILES, GEOMETRY, still_track, write_lmt
from helpers.params import DEMO

from lmt_stereotype.errors import InputError
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.stops import recording_stops


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("columns", ANIMAL_VARIANTS, ids=lambda c: f"{len(c)}cols")
def test_animal_table_with_3_to_9_columns(tmp_path, columns):
    values = {1: {"SEX": "F", "AGE": "adult", "IND": "1", "STRAIN": "C57BL/6J", "SETUP": "A"}}
    db = write_lmt(tmp_path / "r.sqlite", {1: still_track()}, animal_columns=columns, animal_values=values)
    with LMTDatabase(db, GEOMETRY) as rec:
        (animal,) = rec.animals()
    assert animal.id == 1 and animal.rfid == "000004100001"
    assert animal.sex == ("F" if "SEX" in columns else None)
    assert animal.age == ("adult" if "AGE" in columns else None)
    table, _ = recording_stops(db, GEOMETRY, DEMO.stops)
    assert len(table) == 1


def test_event_without_metadata_is_accepted(tmp_path):
    db = write_lmt(tmp_path / "r.sqlite", {1: still_track()}, event_metadata=False)
    assert len(recording_stops(db, GEOMETRY, DEMO.stops)[0]) == 1


def test_anonymous_detections_are_nobody_s_track(tmp_path):
    plain = write_lmt(tmp_path / "a.sqlite", {1: still_track()})
    noisy = write_lmt(tmp_path / "b.sqlite", {1: still_track()}, anonymous=500)
    a, b = (recording_stops(p, GEOMETRY, DEMO.stops)[0] for p in (plain, noisy))
    assert a.equals(b)


def _insert(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    con.execute(sql)
    con.commit()
    con.close()


def test_duplicated_rows_junk_and_dropped_frames(tmp_path):
    frames, x, y = still_track()
    clean = write_lmt(tmp_path / "clean.sqlite", {1: (frames, x, y)})
    messy = write_lmt(tmp_path / "messy.sqlite", {1: (frames, x, y)})
    # duplicate every 5th detection, add a MASS_X < 10 tracking error, FRONT/BACK = -1
    _insert(
        messy,
        "INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) "
        "SELECT FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA FROM DETECTION WHERE ID % 5 = 0",
    )
    _insert(messy, "INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) VALUES (50, 1, 3.0, 200.0, '')")
    _insert(messy, "UPDATE DETECTION SET FRONT_X = -1, FRONT_Y = -1, BACK_X = -1, BACK_Y = -1")
    a, b = (recording_stops(p, GEOMETRY, DEMO.stops)[0] for p in (clean, messy))
    assert a.equals(b)
    # frames dropped inside the stop (a short gap) do not split it
    keep = (frames < 60) | (frames > 70)
    gappy = write_lmt(tmp_path / "gappy.sqlite", {1: (frames[keep], x[keep], y[keep])})
    (stop,) = recording_stops(gappy, GEOMETRY, DEMO.stops)[0].itertuples()
    assert stop.start_frame < 60 and stop.end_frame > 70


def test_frame_timestamps_going_backwards_do_not_matter(tmp_path):
    db = write_lmt(tmp_path / "r.sqlite", {1: still_track()})
    before = recording_stops(db, GEOMETRY, DEMO.stops)[0]
    _insert(db, "UPDATE FRAME SET TIMESTAMP = TIMESTAMP - 5000 WHERE FRAMENUMBER > 40")
    assert recording_stops(db, GEOMETRY, DEMO.stops)[0].equals(before)


def test_without_the_covering_index_the_result_is_the_same(tmp_path):
    a = write_lmt(tmp_path / "a.sqlite", {1: still_track(), 2: still_track(5)})
    b = write_lmt(tmp_path / "b.sqlite", {1: still_track(), 2: still_track(5)}, indexes=False)
    with LMTDatabase(b, GEOMETRY) as rec:
        assert not rec.has_covering_index
    assert recording_stops(a, GEOMETRY, DEMO.stops)[0].equals(recording_stops(b, GEOMETRY, DEMO.stops)[0])


def test_reading_never_changes_the_raw_file(two_stop_db):
    before = sha256(two_stop_db)
    recording_stops(two_stop_db, GEOMETRY, DEMO.stops)
    assert sha256(two_stop_db) == before
    assert not list(two_stop_db.parent.glob("*-journal")) and not list(two_stop_db.parent.glob("*-wal"))


def test_chunked_reading_gives_the_same_stops(two_stop_db):
    whole = recording_stops(two_stop_db, GEOMETRY, DEMO.stops)[0]
    tiny = recording_stops(two_stop_db, GEOMETRY.model_copy(update={"chunk_rows": 7}), DEMO.stops)[0]
    assert whole.equals(tiny)


def test_animals_read_in_threads_give_the_same_stops_in_the_same_order(tmp_path):
    tracks = {i: still_track(1.5 + i, start_frame=7 * i) for i in range(1, 6)}
    db = write_lmt(tmp_path / "r.sqlite", tracks, anonymous=200)
    one = recording_stops(db, GEOMETRY, DEMO.stops, threads=1)[0]
    assert list(one["animal_id"]) == [1, 2, 3, 4, 5]
    for threads, chunk_rows in [(2, 1_000_000), (4, 7), (8, 1)]:
        geometry = GEOMETRY.model_copy(update={"chunk_rows": chunk_rows})
        assert recording_stops(db, geometry, DEMO.stops, threads=threads)[0].equals(one)


# --- bad files: one clear error naming the file and the problem --------------------------------


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_file_gives_clear_error(tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        recording_stops(path, GEOMETRY, DEMO.stops)
    assert err.value.path == path and message in err.value.problem


@pytest.mark.parametrize("case", ["text file", "truncated", "no ANIMAL"])
def test_cli_bad_file_exit_code_2_without_traceback(tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    params = Path(__file__).parents[1] / "params.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmt_stereotype",
            "stop-table",
            str(path),
            "--out",
            str(tmp_path / "s.csv"),
            "-p",
            str(params),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.csv").exists()
