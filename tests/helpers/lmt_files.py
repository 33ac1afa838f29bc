"""Hand-built LMT databases with known tracks, and the bad files the reader must refuse."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from helpers.params import DEMO
from lmt_stereotype.schema import ANIMAL_LAYOUTS, INDEXES, TRACKER_ANIMAL_COLUMNS, create_tables

FPS = 30
GEOMETRY = DEMO.lmt
CLOCK_START_MS = 1_699_963_200_000  # 2023-11-14 12:00 UTC: the first frame at histograms.clock_start
ANIMAL_VARIANTS = list(ANIMAL_LAYOUTS.values())  # every layout of FORMAT.md, 3 to 9 columns


def cm_to_px(x_cm: np.ndarray, y_cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ox, oy = GEOMETRY.arena_origin_px
    return ox + np.asarray(x_cm) * GEOMETRY.px_per_cm, oy + np.asarray(y_cm) * GEOMETRY.px_per_cm


def track(segments: Sequence[tuple[str, float, float, float]], start=(10.0, 10.0)) -> tuple[np.ndarray, np.ndarray]:
    """Positions (cm) per frame from segments ("stay", seconds, _, _) or ("move", seconds, vx, vy) in cm/s."""
    x, y = [start[0]], [start[1]]
    for kind, seconds, vx, vy in segments:
        n = int(round(seconds * FPS))
        for _ in range(n):
            if kind == "move":
                x.append(x[-1] + vx / FPS)
                y.append(y[-1] + vy / FPS)
            else:
                x.append(x[-1])
                y.append(y[-1])
    return np.array(x[1:]), np.array(y[1:])


def still_track(seconds=3.0, start_frame=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, x_cm, y_cm): 1 s moving, ``seconds`` still, 1 s moving: one stop."""
    x, y = track([("move", 1, 15, 0), ("stay", seconds, 0, 0), ("move", 1, 15, 0)])
    return np.arange(start_frame, start_frame + len(x)), x, y


def write_lmt(
    path: Path,
    tracks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    animal_columns: Sequence[str] = TRACKER_ANIMAL_COLUMNS,
    animal_values: dict[int, dict[str, str]] | None = None,
    event_metadata: bool = True,
    anonymous: int = 0,
    indexes: bool = True,
) -> Path:
    """An LMT database with the tracker's schema; ``tracks[animal_id] = (frames, x_cm, y_cm)``."""
    con = sqlite3.connect(path)
    create_tables(con, animal_columns=animal_columns, event_metadata=event_metadata)
    for aid in tracks:
        values = {"ID": aid, "RFID": f"00000410{aid:04d}", "NAME": f"mouse{aid}", "GENOTYPE": "WT"}
        values.update((animal_values or {}).get(aid, {}))
        cols = [c for c in animal_columns if c in values]
        con.execute(
            f"INSERT INTO ANIMAL ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [values[c] for c in cols]
        )
    all_frames = sorted({int(f) for fr, _, _ in tracks.values() for f in fr})
    con.executemany(
        "INSERT INTO FRAME (FRAMENUMBER, TIMESTAMP) VALUES (?, ?)",
        [(f, CLOCK_START_MS + f * 33) for f in all_frames],
    )
    rows = []
    for aid, (frames, x, y) in tracks.items():
        px, py = cm_to_px(x, y)
        rows += [(int(f), aid, float(a), float(b), "<root/>") for f, a, b in zip(frames, px, py)]
    rng = np.random.default_rng(0)
    rows += [
        (int(rng.choice(all_frames)), None, float(rng.uniform(114, 398)), float(rng.uniform(63, 353)), "<root/>")
        for _ in range(anonymous)
    ]
    rows.sort(key=lambda r: r[0])
    con.executemany("INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) VALUES (?, ?, ?, ?, ?)", rows)
    if indexes:
        con.executescript(INDEXES)
    con.commit()
    con.close()
    return path


# --- bad files: each a maker (a folder -> the bad file's path) and what the error must say -------


def _truncated(tmp_path: Path) -> Path:
    good = write_lmt(tmp_path / "good.sqlite", {1: still_track(60)})
    data = good.read_bytes()
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _drop(tmp_path: Path, sql: str) -> Path:
    db = write_lmt(tmp_path / "r.sqlite", {1: still_track()})
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.close()
    return db


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (lambda t: _file(t / "e.sqlite", b""), "empty file"),
    "text file": (lambda t: _file(t / "t.sqlite", b"frame,x,y\n1,2,3\n" * 20), "not an SQLite"),
    "truncated": (_truncated, "truncated"),
    "missing": (lambda t: t / "nope.sqlite", "not found"),
    "no DETECTION": (lambda t: _drop(t, "DROP TABLE DETECTION;"), "table DETECTION is missing"),
    "no ANIMAL": (lambda t: _drop(t, "DROP TABLE ANIMAL;"), "table ANIMAL is missing"),
    "no MASS_Y": (
        lambda t: _drop(t, "DROP INDEX detectionFastLoadXYIndex; ALTER TABLE DETECTION DROP COLUMN MASS_Y;"),
        "lacks column(s) MASS_Y",
    ),
}
