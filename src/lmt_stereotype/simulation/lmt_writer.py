"""The LMT writer: one simulated recording as a database the tracker could have written.

It uses the tracker's own schema (:mod:`lmt_stereotype.schema`) and every quirk
FORMAT.md lists (anonymous blobs, duplicated and junk rows, missing head/tail, dropped
frames, a clock that jumps back, hidden animals, ANIMAL and EVENT variants), so that
the reader meets what real files hold. The paths come from
:mod:`~lmt_stereotype.simulation.behaviour`; DETECTION rows carry the tracker's XML
with a zlib-compressed mask, FRAME rows a wall clock (ms since the epoch) starting at
``START_MS`` plus a whole number of days, so at ``START_HOUR``.
"""

from __future__ import annotations

import math
import sqlite3
import zlib
from pathlib import Path

import numpy as np

from lmt_stereotype.config import Params
from lmt_stereotype.files import atomic_path
from lmt_stereotype.schema import INDEXES, animal_layout, create_tables
from lmt_stereotype.simulation.behaviour import (
    EDGE_CM,
    START_HOUR,
    STOP,
    Profile,
    SimMouse,
    Track,
    hidden_frames,
    lights_on,
    plan_track,
    positions,
)

MISSED_P = 0.002  # single missing detections elsewhere
DROPPED_FRAME_P = 0.0005  # frames with no FRAME row and no detection
DUPLICATE_P = 0.001  # identified rows written twice
JUNK_P = 0.0005  # identified rows with MASS_X < 10 (tracking errors)
NO_HEAD_P = NO_TAIL_P = 0.05  # FRONT_* / BACK_* = -1
REARING_P, LOOK_UP_P, LOOK_DOWN_P = 0.03, 0.02, 0.02
TRACKING_NOISE_PX = 0.3
BODY_HALF_PX = 12.0  # head and tail this far ahead of / behind the centre of mass
N_POSES = 16  # heading bins; one precomputed mask per bin

CHUNK_FRAMES = 54_000  # frames generated and inserted at a time (30 min at 30 fps)
FIRST_FRAME = 1
START_MS = 1_704_708_000_000  # 2024-01-08 10:00 (clock of the recording PC, written as UTC)
DAY_MS = 86_400_000

_STAGE = "CREATE TEMP TABLE STAGE (F INTEGER, A INTEGER, X REAL, Y REAL, Z REAL, H INTEGER, K INTEGER)"
# K bits: 1 rearing, 2 looking up, 4 looking down, 8 head not found, 16 tail not found.
_DETECTION_FROM_STAGE = """
INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, MASS_Z, FRONT_X, FRONT_Y, FRONT_Z,
                       BACK_X, BACK_Y, BACK_Z, REARING, LOOK_UP, LOOK_DOWN, DATA)
SELECT F, NULLIF(A, 0), X, Y, Z,
       iif(K & 8, -1, round(X + DX, 2)), iif(K & 8, -1, round(Y + DY, 2)), iif(K & 8, -1, round(Z + 2, 1)),
       iif(K & 16, -1, round(X - DX, 2)), iif(K & 16, -1, round(Y - DY, 2)), iif(K & 16, -1, round(Z - 2, 1)),
       K & 1, (K >> 1) & 1, (K >> 2) & 1,
       printf('<root><DATA mass_x="%.2f" mass_y="%.2f"/><ROI><boundsX>%d</boundsX><boundsY>%d</boundsY>'
              || '<boundsW>%d</boundsW><boundsH>%d</boundsH><boolMaskData>%s</boolMaskData></ROI></root>',
              X, Y, CAST(X AS INTEGER) - :half, CAST(Y AS INTEGER) - :half, :side, :side, MASK)
FROM temp.STAGE JOIN temp.POSE USING (H) ORDER BY STAGE.rowid
"""


def _mask_hex(side: int, heading: float) -> str:
    """A mouse-shaped (elliptic) binary mask along ``heading``, zlib-compressed, as the tracker writes it."""
    c = (np.arange(side) - (side - 1) / 2) / (side / 2)
    xx, yy = np.meshgrid(c, c)
    along = xx * np.cos(heading) + yy * np.sin(heading)
    across = -xx * np.sin(heading) + yy * np.cos(heading)
    mask = ((along / 0.95) ** 2 + (across / 0.55) ** 2 <= 1).astype(np.uint8)
    return ":".join(f"{byte:x}" for byte in zlib.compress(mask.tobytes(), 5))


def _create_tables(
    con: sqlite3.Connection, animal_columns: tuple[str, ...], event_metadata: bool, mask_px: int
) -> None:
    """The tracker's tables in their variant, and the temporary tables rows are staged in."""
    create_tables(con, animal_columns=animal_columns, event_metadata=event_metadata)
    con.execute("PRAGMA temp_store = MEMORY")
    con.execute(_STAGE)
    con.execute("CREATE TEMP TABLE POSE (H INTEGER PRIMARY KEY, DX REAL, DY REAL, MASK TEXT)")
    headings = 2 * np.pi * np.arange(N_POSES) / N_POSES
    con.executemany(
        "INSERT INTO temp.POSE VALUES (?, ?, ?, ?)",
        [
            (i, round(BODY_HALF_PX * math.cos(h), 2), round(BODY_HALF_PX * math.sin(h), 2), _mask_hex(mask_px, h))
            for i, h in enumerate(headings.tolist())
        ],
    )


def _animal_rows(mice: list[SimMouse], animal_columns: tuple[str, ...]) -> tuple[list[str], list[tuple]]:
    cols = list(animal_columns)
    rows = []
    for m in mice:
        values = {
            "ID": m.animal_id,
            "RFID": m.rfid,
            "NAME": m.name,
            "GENOTYPE": m.genotype,
            "IND": "",
            "AGE": m.age,
            "SEX": m.sex,
            "STRAIN": "C57BL/6J",
            "SETUP": "",
        }
        rows.append(tuple(values[c] for c in cols))
    return cols, rows


def _timestamps(frames: np.ndarray, start_ms: int, jumps: np.ndarray, back_ms: np.ndarray, fps: float) -> np.ndarray:
    """Wall clock (ms) of frames; it jumps back by ``back_ms`` at each of ``jumps`` (a clock correction)."""
    setback = np.concatenate([[0], np.cumsum(back_ms)])[np.searchsorted(jumps, frames, side="right")]
    return start_ms + np.round(frames * 1000.0 / fps).astype(np.int64) - setback


def _write_chunk(
    con: sqlite3.Connection,
    tracks: list[Track],
    f0: int,
    f1: int,
    n_frames: int,
    clock: tuple[int, np.ndarray, np.ndarray],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
) -> None:
    """Frames [f0, f1): every animal's detections, anonymous blobs and the FRAME rows."""
    g = params.lmt
    fps, (ox, oy), ppc, arena = g.fps, g.arena_origin_px, g.px_per_cm, g.arena_size_cm
    f = np.arange(f0, f1)
    exists = (rng.random(len(f)) >= DROPPED_FRAME_P) | (f == 0) | (f == n_frames - 1)
    frame, animal, x, y, heading = [], [], [], [], []
    for tr in tracks:
        fv = f[exists & ~hidden_frames(tr, f0, f1) & (rng.random(len(f)) >= MISSED_P)]
        xc, yc, h = positions(tr, fv, fps)
        frame.append(fv)
        animal.append(np.full(len(fv), tr.mouse.animal_id))
        x.append(xc)
        y.append(yc)
        heading.append(h)
    n_ident = sum(len(a) for a in frame)
    frac = profile.anonymous_fraction
    n_anon = round(n_ident * frac / (1 - frac))
    frame.append(np.sort(rng.choice(f[exists], n_anon)))
    animal.append(np.zeros(n_anon, dtype=np.int64))
    x.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    y.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    heading.append(rng.uniform(-np.pi, np.pi, n_anon))
    frame, animal = np.concatenate(frame), np.concatenate(animal)
    n = len(frame)
    x_px = ox + np.concatenate(x) * ppc + rng.normal(0, TRACKING_NOISE_PX, n)
    y_px = oy + np.concatenate(y) * ppc + rng.normal(0, TRACKING_NOISE_PX, n)
    junk = (animal > 0) & (rng.random(n) < JUNK_P)
    x_px[junk] = rng.uniform(0, 5, int(junk.sum()))
    pose = np.round(np.concatenate(heading) / (2 * np.pi) * N_POSES).astype(np.int64) % N_POSES
    rearing = rng.random(n) < REARING_P
    flags = (
        rearing
        | (rng.random(n) < LOOK_UP_P) << 1
        | (rng.random(n) < LOOK_DOWN_P) << 2
        | (rng.random(n) < NO_HEAD_P) << 3
        | (rng.random(n) < NO_TAIL_P) << 4
    )
    z = np.round(rng.normal(25.0, 1.5, n) + 15.0 * rearing, 1)
    particles = np.bincount(frame - f0, minlength=len(f))
    rows = np.concatenate([np.arange(n), np.flatnonzero((animal > 0) & (rng.random(n) < DUPLICATE_P))])
    rows = rows[np.argsort(frame[rows], kind="stable")]  # frame order; cage mates, blobs, then duplicates

    con.executemany(
        "INSERT INTO temp.STAGE VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(
            (frame[rows] + FIRST_FRAME).tolist(),
            animal[rows].tolist(),
            np.round(x_px[rows], 2).tolist(),
            np.round(y_px[rows], 2).tolist(),
            z[rows].tolist(),
            pose[rows].tolist(),
            flags[rows].tolist(),
        ),
    )
    half = profile.data_mask_px // 2
    con.execute(_DETECTION_FROM_STAGE, {"half": half, "side": profile.data_mask_px})
    con.execute("DELETE FROM temp.STAGE")

    fe = f[exists]
    interval = fe / (profile.interval_s * fps)
    hour, light = START_HOUR + interval, lights_on(np.floor(interval).astype(np.int64), params.room.lights_on)
    m = len(fe)
    con.executemany(
        "INSERT INTO FRAME VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
        zip(
            (fe + FIRST_FRAME).tolist(),
            _timestamps(fe, *clock, fps).tolist(),
            particles[exists].tolist(),
            np.round(22.5 + 0.4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.05, m), 2).tolist(),
            np.round(45.0 + 2.0 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 0.3, m), 2).tolist(),
            np.round(38.0 + 4.0 * ~light + np.abs(rng.normal(0, 3, m)), 2).tolist(),
            np.round(np.where(light, 600.0, 5.0) + rng.normal(0, 2, m), 2).tolist(),
            np.round(np.where(light, 1000.0, 350.0) + rng.normal(0, 3, m), 2).tolist(),
        ),
    )


def _write_events(
    con: sqlite3.Connection,
    tracks: list[Track],
    clock: tuple[int, np.ndarray, np.ndarray],
    params: Params,
    rng: np.random.Generator,
) -> None:
    """A "Stop" event per planted stop and a few RFID reads (RFIDEVENT + "RFID MATCH" events)."""
    g = params.lmt
    events, reads = [], []
    for tr in tracks:
        stops = np.flatnonzero(tr.seg.kind == STOP)
        first = tr.start[stops] + FIRST_FRAME
        last = first + tr.seg.n[stops] - 1
        events += [("Stop", s, e, tr.mouse.animal_id) for s, e in zip(first.tolist(), last.tolist())]
        for i in rng.choice(stops, min(3, len(stops)), replace=False).tolist():
            frame = int(tr.start[i])
            events.append(("RFID MATCH", frame + FIRST_FRAME, frame + FIRST_FRAME, tr.mouse.animal_id))
            reads.append(
                (
                    frame,
                    tr.mouse.rfid,
                    int(_timestamps(np.array([frame]), *clock, g.fps)[0]),
                    int(g.arena_origin_px[0] + tr.seg.x0[i] * g.px_per_cm),
                    int(g.arena_origin_px[1] + tr.seg.y0[i] * g.px_per_cm),
                )
            )
    events.sort(key=lambda e: (e[1], e[3], e[0]))
    con.executemany(
        "INSERT INTO EVENT (NAME, DESCRIPTION, STARTFRAME, ENDFRAME, IDANIMALA) VALUES (?, ?, ?, ?, ?)",
        [(name, name, s, e, a) for name, s, e, a in events],
    )
    con.executemany("INSERT INTO RFIDEVENT (RFID, TIME, X, Y) VALUES (?, ?, ?, ?)", [r[1:] for r in sorted(reads)])


def simulate_recording(
    path: Path,
    mice: list[SimMouse],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
    *,
    animal_columns: int = 4,
    event_metadata: bool = True,
) -> None:
    """Writes one LMT database for one cage at one age.

    Generated and inserted ``CHUNK_FRAMES`` at a time, so that memory stays bounded for
    72-h recordings; indexes are built after the inserts (much faster). Written to a
    temporary file beside ``path`` and renamed into place.
    """
    layout = animal_layout(animal_columns)  # ValueError unless 3..9
    n_frames = round(profile.n_intervals * profile.interval_s * params.lmt.fps)
    tracks = [plan_track(m, params, profile, rng, n_frames) for m in mice]
    jumps = np.sort(rng.integers(n_frames // 10, n_frames * 9 // 10, rng.integers(1, 3)))
    clock = (START_MS + int(rng.integers(0, 300)) * DAY_MS, jumps, rng.integers(200, 1500, len(jumps)))
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp, isolation_level=None)  # explicit BEGIN/COMMIT
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            _create_tables(con, layout, event_metadata, profile.data_mask_px)
            con.execute("BEGIN")
            cols, rows = _animal_rows(mice, layout)
            con.executemany(f"INSERT INTO ANIMAL ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            for f0 in range(0, n_frames, CHUNK_FRAMES):
                _write_chunk(con, tracks, f0, min(f0 + CHUNK_FRAMES, n_frames), n_frames, clock, params, profile, rng)
            _write_events(con, tracks, clock, params, rng)
            con.execute("COMMIT")
            con.executescript("DROP TABLE temp.STAGE; DROP TABLE temp.POSE;" + INDEXES)
        finally:
            con.close()
