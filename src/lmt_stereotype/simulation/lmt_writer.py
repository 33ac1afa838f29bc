"""The LMT writer: one simulated recording as a database the tracker could have written.

It follows FORMAT.md: the tracker's own schema with its quoted DDL and ten indexes
(:mod:`lmt_stereotype.schema`), one of the ANIMAL layouts real files have, EVENT with or
without METADATA, lmt-analysis's LOG table in files it has processed, and every quirk
of real tracks (anonymous blobs, animals identified late, duplicated rows with the same
or other coordinates, junk rows, missing head/tail, dropped frames, a clock that jumps
back, long stretches hidden in the house). Coordinates are rounded to 2 decimals as the
tracker does. DETECTION rows carry the tracker's XML (a DATA element, then ROI fields
as child elements with a zlib-compressed mask); FRAME rows a wall clock (ms since the
epoch) that starts at the recording's ``start_hour`` of a day.

EVENT holds what the tracker itself computes, never the simulator's plan: "Detection"
(runs of frames an animal was detected), "Stop" (the tracker's rule: a 6-frame
displacement / 7 strictly below 1 px/frame, needing detections at t-3, t and t+3, no
minimum duration) and "RFID MATCH". The planted stops, the ground truth, go to a table
beside the recording (``truth``), which tests and benchmarks read.
"""

from __future__ import annotations

import math
import sqlite3
import zlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lmt_stereotype.config import Params
from lmt_stereotype.files import atomic_path, write_table
from lmt_stereotype.schema import ANIMAL_LAYOUTS, INDEXES, create_tables
from lmt_stereotype.simulation.behaviour import (
    EDGE_CM,
    STOP,
    Profile,
    SimMouse,
    Track,
    cage_sites,
    frame_hours,
    hidden_frames,
    lights_on,
    plan_track,
    positions,
    recording_frames,
)

MISSED_P = 0.002  # single missing detections elsewhere
DROPPED_FRAME_P = 0.0005  # frames with no FRAME row and no detection
DUPLICATE_P = 0.001  # identified rows written twice
DUPLICATE_MOVED_PX = 3.0  # half of the duplicates: the second row elsewhere by this sd
JUNK_P = 0.0005  # identified rows with MASS_X < 10 (tracking errors)
NO_HEAD_P = NO_TAIL_P = 0.05  # FRONT_* / BACK_* = -1
REARING_P, LOOK_UP_P, LOOK_DOWN_P = 0.03, 0.02, 0.02
TRACKING_NOISE_PX = 0.3
BODY_HALF_PX = 12.0  # head and tail this far ahead of / behind the centre of mass
N_POSES = 16  # heading bins; one precomputed mask per bin
LATE_ID_FRAMES = (100, 400)  # an animal identified late: its first frames are anonymous blobs

CHUNK_FRAMES = 54_000  # frames generated and inserted at a time (30 min at 30 fps)
FIRST_FRAME = 1
START_MS = 1_704_672_000_000  # 2024-01-08 00:00 UTC: recordings fall on one of the 300 days after it
DAY_MS = 86_400_000
TRACKER_STOP_PX = 1.0  # the tracker's Stop: |p(t+3) - p(t-3)| / 7 below this many px per frame

TRUTH_COLUMNS = ["animal_id", "rfid", "start_frame", "end_frame", "x_cm", "y_cm", "site", "seen_frames"]
"""The planted stops: file frame numbers, the planted spot (cm), its site, and in how many of its
frames the animal was detected and identified (0: hidden the whole time, no rule can find it)."""


@dataclass(frozen=True)
class FileVariant:
    """How one file differs from the tracker's default (FORMAT.md's variants)."""

    animal_layout: str = "4"  # a key of schema.ANIMAL_LAYOUTS
    event_metadata: bool = True
    processed: bool = False  # lmt-analysis has processed it: a LOG table (and EVENT.METADATA)
    null_animal: bool = False  # an extra ANIMAL row whose every column but ID is NULL
    late_animals: int = 0  # animals identified only after LATE_ID_FRAMES


_STAGE = "CREATE TEMP TABLE STAGE (F INTEGER, A INTEGER, X REAL, Y REAL, Z REAL, H INTEGER, K INTEGER)"
# K bits: 1 rearing, 2 looking up, 4 looking down, 8 head not found, 16 tail not found.
_DETECTION_FROM_STAGE = """
INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, MASS_Z, FRONT_X, FRONT_Y, FRONT_Z,
                       BACK_X, BACK_Y, BACK_Z, REARING, LOOK_UP, LOOK_DOWN, DATA)
SELECT F, NULLIF(A, 0), X, Y, Z,
       iif(K & 8, -1, round(X + DX, 2)), iif(K & 8, -1, round(Y + DY, 2)), iif(K & 8, -1, round(Z + 2, 1)),
       iif(K & 16, -1, round(X - DX, 2)), iif(K & 16, -1, round(Y - DY, 2)), iif(K & 16, -1, round(Z - 2, 1)),
       K & 1, (K >> 1) & 1, (K >> 2) & 1,
       printf('<root><DATA mass_x="%.2f" mass_y="%.2f" mass_z="%.1f" isRearing="%s" isLookingUp="%s"'
              || ' isLookingDown="%s" t="%d"/><ROI><classname>plugins.kernel.roi.roi2d.ROI2DArea</classname>'
              || '<id>%d</id><name>%s</name><selected>false</selected><readOnly>false</readOnly>'
              || '<boundsX>%d</boundsX><boundsY>%d</boundsY><boundsW>%d</boundsW><boundsH>%d</boundsH>'
              || '<boolMaskData>%s</boolMaskData></ROI></root>',
              X, Y, Z, iif(K & 1, 'true', 'false'), iif(K & 2, 'true', 'false'), iif(K & 4, 'true', 'false'), F,
              A, iif(A, 'Mouse ' || A, 'blob'),
              CAST(X AS INTEGER) - :half, CAST(Y AS INTEGER) - :half, :side, :side, MASK)
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


def _create_tables(con: sqlite3.Connection, variant: FileVariant, mask_px: int) -> None:
    """The tracker's tables in their variant, and the temporary tables rows are staged in."""
    create_tables(
        con,
        animal_columns=ANIMAL_LAYOUTS[variant.animal_layout],
        event_metadata=variant.event_metadata or variant.processed,
        log=variant.processed,
    )
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


def _write_animals(con: sqlite3.Connection, mice: list[SimMouse], variant: FileVariant) -> None:
    """ANIMAL rows in the variant's layout (the tracker fills RFID and NAME; AGE, SEX ... as a lab's
    script would), and the extra all-NULL row some files hold."""
    cols = [c for c in ANIMAL_LAYOUTS[variant.animal_layout]]
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
            "TREATMENT": "",
        }
        rows.append(tuple(values[c] for c in cols))
    con.executemany(f"INSERT INTO ANIMAL ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    if variant.null_animal:
        con.execute("INSERT INTO ANIMAL (ID) VALUES (?)", (max(m.animal_id for m in mice) + 1,))


def _first_frame_ms(day: int, start_hour: float, timezone: str) -> int:
    """Epoch ms of clock ``start_hour`` of the ``day``-th day after START_MS's date, in the room's ``timezone``
    (the recording PC's clock shows local time; the pipeline reads it in ``room.timezone``)."""
    midnight = datetime.fromtimestamp(START_MS / 1000, tz=ZoneInfo("UTC")).date() + timedelta(days=day)
    local = datetime.combine(midnight, time(), tzinfo=ZoneInfo(timezone)) + timedelta(hours=start_hour)
    return round(local.timestamp() * 1000)


def _timestamps(frames: np.ndarray, start_ms: int, jumps: np.ndarray, back_ms: np.ndarray, fps: float) -> np.ndarray:
    """Wall clock (ms) of frames; it jumps back by ``back_ms`` at each of ``jumps`` (a clock correction)."""
    setback = np.concatenate([[0], np.cumsum(back_ms)])[np.searchsorted(jumps, frames, side="right")]
    return start_ms + np.round(frames * 1000.0 / fps).astype(np.int64) - setback


class _TrackerEvents:
    """The tracker's "Detection" and "Stop" events of one animal, fed chunk by chunk (file frames)."""

    def __init__(self) -> None:
        self._tail = np.full((6, 2), np.nan)  # the 6 frames before the chunk (NaN: not detected)
        self._open: dict[str, int | None] = {"Detection": None, "Stop": None}
        self._last: dict[str, int] = {}
        self.events: list[tuple[str, int, int]] = []

    def feed(self, f0: int, f1: int, frames: np.ndarray, x_px: np.ndarray, y_px: np.ndarray) -> None:
        """Frames [f0, f1) (0-based), the animal detected at ``frames`` (sorted, unique) at (x_px, y_px)."""
        pos = np.full((f1 - f0 + 6, 2), np.nan)
        pos[:6] = self._tail
        pos[frames - f0 + 6] = np.column_stack([x_px, y_px])
        seen = ~np.isnan(pos[:, 0])
        self._runs("Detection", seen[6:], f0)
        moved = np.hypot(pos[6:, 0] - pos[:-6, 0], pos[6:, 1] - pos[:-6, 1]) / 7  # NaN where a frame is missing
        self._runs("Stop", seen[:-6] & seen[3:-3] & seen[6:] & (moved < TRACKER_STOP_PX), f0 - 3)
        self._tail = pos[-6:]

    def finish(self) -> list[tuple[str, int, int]]:
        for name, start in self._open.items():
            if start is not None:
                self.events.append((name, start + FIRST_FRAME, self._last[name] + FIRST_FRAME))
        return self.events

    def _runs(self, name: str, flags: np.ndarray, first: int) -> None:
        edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        runs = [[first + s, first + e] for s, e in zip(starts.tolist(), ends.tolist())]
        if self._open[name] is not None:
            if runs and runs[0][0] == first:
                runs[0][0] = self._open[name]
            else:
                self.events.append((name, self._open[name] + FIRST_FRAME, first - 1 + FIRST_FRAME))
            self._open[name] = None
        if runs and runs[-1][1] == first + len(flags) - 1:
            self._open[name] = runs.pop()[0]
        self._last[name] = first + len(flags) - 1
        self.events += [(name, s + FIRST_FRAME, e + FIRST_FRAME) for s, e in runs]


def _write_chunk(
    con: sqlite3.Connection,
    tracks: list[Track],
    f0: int,
    f1: int,
    n_frames: int,
    clock: tuple[int, np.ndarray, np.ndarray],
    start_hour: float,
    identified_from: list[int],
    events: list[_TrackerEvents],
    seen: list[np.ndarray],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
) -> None:
    """Frames [f0, f1): every animal's detections, anonymous blobs and the FRAME rows; the tracker's
    events fed, and each planted segment's count of frames seen added to ``seen``."""
    g = params.lmt
    fps, (ox, oy), ppc, arena = g.fps, g.arena_origin_px, g.px_per_cm, g.arena_size_cm
    f = np.arange(f0, f1)
    exists = (rng.random(len(f)) >= DROPPED_FRAME_P) | (f == 0) | (f == n_frames - 1)
    frame, animal, x, y, heading = [], [], [], [], []
    for k, tr in enumerate(tracks):
        fv = f[exists & ~hidden_frames(tr, f0, f1) & (rng.random(len(f)) >= MISSED_P)]
        xc, yc, h = positions(tr, fv, fps)
        ident = fv >= identified_from[k]
        frame.append(fv)
        animal.append(np.where(ident, tr.mouse.animal_id, 0))
        x.append(xc)
        y.append(yc)
        heading.append(h)
        np.add.at(seen[k], np.searchsorted(tr.start, fv[ident], side="right") - 1, 1)
    n_ident = sum(int((a > 0).sum()) for a in animal)
    frac = profile.anonymous_fraction
    n_anon = round(n_ident * frac / (1 - frac))
    frame.append(np.sort(rng.choice(f[exists], n_anon)))
    animal.append(np.zeros(n_anon, dtype=np.int64))
    x.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    y.append(rng.uniform(EDGE_CM, arena - EDGE_CM, n_anon))
    heading.append(rng.uniform(-np.pi, np.pi, n_anon))
    frame, animal = np.concatenate(frame), np.concatenate(animal)
    n = len(frame)
    x_px = np.round(ox + np.concatenate(x) * ppc + rng.normal(0, TRACKING_NOISE_PX, n), 2)
    y_px = np.round(oy + np.concatenate(y) * ppc + rng.normal(0, TRACKING_NOISE_PX, n), 2)
    for k, tr in enumerate(tracks):  # the tracker's events, from the positions it measured (not the junk rows)
        mine = animal == tr.mouse.animal_id
        events[k].feed(f0, f1, frame[mine], x_px[mine], y_px[mine])
    junk = (animal > 0) & (rng.random(n) < JUNK_P)
    x_px[junk] = np.round(rng.uniform(0, 5, int(junk.sum())), 2)
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
    duplicates = np.flatnonzero((animal > 0) & (rng.random(n) < DUPLICATE_P))
    moved = rng.random(len(duplicates)) < 0.5  # half with other coordinates
    dx, dy = (np.round(rng.normal(0, DUPLICATE_MOVED_PX, len(duplicates)) * moved, 2) for _ in range(2))
    rows = np.concatenate([np.arange(n), duplicates])
    shift_x, shift_y = np.concatenate([np.zeros(n), dx]), np.concatenate([np.zeros(n), dy])
    order = np.argsort(frame[rows], kind="stable")  # frame order; cage mates, blobs, then duplicates
    rows, shift_x, shift_y = rows[order], shift_x[order], shift_y[order]

    con.executemany(
        "INSERT INTO temp.STAGE VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(
            (frame[rows] + FIRST_FRAME).tolist(),
            animal[rows].tolist(),
            np.round(x_px[rows] + shift_x, 2).tolist(),
            np.round(y_px[rows] + shift_y, 2).tolist(),
            z[rows].tolist(),
            pose[rows].tolist(),
            flags[rows].tolist(),
        ),
    )
    half = profile.data_mask_px // 2
    con.execute(_DETECTION_FROM_STAGE, {"half": half, "side": profile.data_mask_px})
    con.execute("DELETE FROM temp.STAGE")

    fe = f[exists]
    hour = frame_hours(fe, start_hour, fps, profile.interval_s)
    light = lights_on(hour, params.room.lights_on)
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
    tracker_events: list[list[tuple[str, int, int]]],
    clock: tuple[int, np.ndarray, np.ndarray],
    params: Params,
    rng: np.random.Generator,
) -> None:
    """The tracker's events ("Detection", "Stop") and a few RFID reads (RFIDEVENT + "RFID MATCH" events)."""
    g = params.lmt
    events = [(name, s, e, tr.mouse.animal_id) for tr, own in zip(tracks, tracker_events) for name, s, e in own]
    reads = []
    for tr in tracks:
        stops = np.flatnonzero(tr.seg.kind == STOP)
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
        "INSERT INTO EVENT (NAME, DESCRIPTION, STARTFRAME, ENDFRAME, IDANIMALA) VALUES (?, '', ?, ?, ?)", events
    )
    con.executemany("INSERT INTO RFIDEVENT (RFID, TIME, X, Y) VALUES (?, ?, ?, ?)", [r[1:] for r in sorted(reads)])


def _write_log(con: sqlite3.Connection, n_frames: int) -> None:
    """lmt-analysis's LOG rows, as its event builders leave them."""
    processes = ("Build Event Stop", "Build Event Move", "Build Event Huddling")
    con.executemany(
        "INSERT INTO LOG (process, version, date, tmin, tmax) VALUES (?, ?, ?, ?, ?)",
        [(p, "1.0.5", "08-January-2024 18:00:00", 0, n_frames + FIRST_FRAME - 1) for p in processes],
    )


def _planted_stops(tracks: list[Track], seen: list[np.ndarray], params: Params) -> pd.DataFrame:
    """The ground truth: every planted stop of every mouse (file frames)."""
    names = [s.name for s in cage_sites(params.cage_layout, params.lmt.arena_size_cm, (0.0, 0.0))]
    parts = []
    for tr, counts in zip(tracks, seen):
        i = np.flatnonzero(tr.seg.kind == STOP)
        parts.append(
            pd.DataFrame(
                {
                    "animal_id": np.full(len(i), tr.mouse.animal_id, dtype=np.int64),
                    "rfid": tr.mouse.rfid,
                    "start_frame": tr.start[i] + FIRST_FRAME,
                    "end_frame": tr.start[i] + tr.seg.n[i] - 1 + FIRST_FRAME,
                    "x_cm": tr.seg.x0[i],
                    "y_cm": tr.seg.y0[i],
                    "site": np.array(names, dtype=object)[tr.seg.site[i]],
                    "seen_frames": counts[i],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[TRUTH_COLUMNS]


def simulate_recording(
    path: Path,
    mice: list[SimMouse],
    params: Params,
    profile: Profile,
    rng: np.random.Generator,
    *,
    variant: FileVariant = FileVariant(),
    start_hour: float = 10.0,
    truth: Path | None = None,
) -> None:
    """Writes one LMT database for one cage at one age, starting at clock ``start_hour``; the planted
    stops to ``truth`` (a parquet table, :data:`TRUTH_COLUMNS`) when given.

    Generated and inserted ``CHUNK_FRAMES`` at a time, so that memory stays bounded for
    72-h recordings; indexes are built after the inserts (much faster). Written to a
    temporary file beside ``path`` and renamed into place.
    """
    if variant.animal_layout not in ANIMAL_LAYOUTS:
        raise ValueError(f"animal_layout must be one of {', '.join(ANIMAL_LAYOUTS)}, not {variant.animal_layout!r}")
    n_frames = recording_frames(profile, params)
    tracks = [plan_track(m, params, profile, rng, n_frames, start_hour) for m in mice]
    jumps = np.sort(rng.integers(n_frames // 10, n_frames * 9 // 10, rng.integers(1, 3)))
    day = int(rng.integers(0, 300))
    clock = (_first_frame_ms(day, start_hour, params.room.timezone), jumps, rng.integers(200, 1500, len(jumps)))
    late = set(rng.choice(len(mice), variant.late_animals, replace=False).tolist())
    identified_from = [int(rng.integers(*LATE_ID_FRAMES)) if k in late else 0 for k in range(len(mice))]
    events = [_TrackerEvents() for _ in tracks]
    seen = [np.zeros(len(tr.start), dtype=np.int64) for tr in tracks]
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp, isolation_level=None)  # explicit BEGIN/COMMIT
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            _create_tables(con, variant, profile.data_mask_px)
            con.execute("BEGIN")
            _write_animals(con, mice, variant)
            for f0 in range(0, n_frames, CHUNK_FRAMES):
                f1 = min(f0 + CHUNK_FRAMES, n_frames)
                ids = (identified_from, events, seen)
                _write_chunk(con, tracks, f0, f1, n_frames, clock, start_hour, *ids, params, profile, rng)
            _write_events(con, tracks, [e.finish() for e in events], clock, params, rng)
            if variant.processed:
                _write_log(con, n_frames)
            con.execute("COMMIT")
            con.executescript("DROP TABLE temp.STAGE; DROP TABLE temp.POSE;" + INDEXES)
        finally:
            con.close()
    if truth is not None:
        write_table(_planted_stops(tracks, seen, params), truth)
