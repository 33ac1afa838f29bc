"""Shared fixtures: hand-built LMT databases with known tracks."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers.params import DEMO

from lmt_stereotype.schema import INDEXES, TRACKER_ANIMAL_COLUMNS, create_tables

FPS = 30
GEOMETRY = DEMO.lmt


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> Iterator[str]:
    """Every test (and CLI subprocess) tracks into a throw-away SQLite store, not the project's."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if old is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


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
        [(f, 1_700_000_000_000 + f * 33) for f in all_frames],
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


@pytest.fixture
def two_stop_db(tmp_path: Path) -> Path:
    """Animal 1: 2 s still, 2 s moving at 20 cm/s, 3 s still, 1 s moving. Animal 2 always moving."""
    x, y = track([("stay", 2, 0, 0), ("move", 2, 20, 0), ("stay", 3, 0, 0), ("move", 1, 0, 20)])
    frames = np.arange(1, len(x) + 1)
    x2, y2 = track([("move", 4, 8, 0), ("move", 4, 0, 8)])
    return write_lmt(tmp_path / "rec.sqlite", {1: (frames, x, y), 2: (np.arange(1, len(x2) + 1), x2, y2)}, anonymous=50)
