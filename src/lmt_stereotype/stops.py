"""Stop detection: where and when a mouse held still.

A stop is a maximal run of an animal's detections whose centre-of-mass speed is at
most ``speed_threshold_cm_s`` (paper: 5 cm/s) and that lasts at least
``min_duration_s`` (paper: 1 s). The rule, exactly (the specification the tests check):

1. Gaps and breaks. Take one animal's track, frames sorted, duplicates and junk already
   removed by the reader: detections ``0 .. n-1`` at frames ``frame[i]`` and positions
   ``p[i]`` (cm). Between consecutive detections ``i`` and ``i+1``, with
   ``d = frame[i+1] - frame[i]``: ``d == 1`` is no gap (never a break, however far the
   mouse moved). ``d > 1`` is a detection gap of ``d - 1`` missing frames; it is
   *bridged* when ``d - 1 <= floor(max_gap_s * fps + 1e-9)`` **and**
   ``|p[i+1] - p[i]| <= max_gap_cm`` (the mouse reappeared where it vanished), and
   otherwise it is a *break*.
2. Speed. Breaks cut the track into pieces. With half-window
   ``h = speed_window_frames // 2``, the speed of detection ``i`` is the centred
   difference over the ``h``-th detections before and after it, divided by their true
   time apart: ``|p[i+h] - p[i-h]| / ((frame[i+h] - frame[i-h]) / fps)``. It is defined
   only when detections ``i-h .. i+h`` all exist and lie in one piece (no break between
   any two consecutive ones); an undefined speed is not stopped. A detection is
   *stopped* when its speed is defined and ``<= speed_threshold_cm_s``.
3. Stops. A stop is a maximal run of consecutive stopped detections inside one piece
   (two consecutive stopped detections are never separated by a break anyway: both
   their speed windows hold the pair between them). It is kept when
   ``(end_frame - start_frame + 1) / fps >= min_duration_s``; its position is the mean
   of its detections' positions (summed in exact fixed point) and ``n_detections``
   their number.

With no dropped frames and the default window of 7 the speed spans 6 frames (0.2 s),
the tracker's own Stop window, which averages out the ~1 px jitter a one-frame
difference turns into ~2.6 cm/s of noise. ``max_gap_s: 0`` bridges no gap at all; with
``speed_window_frames: 3`` the speed is then exactly lmt-analysis's ``getSpeed``
(centred one-frame difference, undefined next to any missing frame), and the rule is
that speed followed by the paper's <= 5 cm/s for >= 1 s.

Why a gap is bridged by where the mouse reappears, not by its speed across the gap: a
mouse hidden (in the house, under another mouse, tracking lost) for up to ``max_gap_s``
that reappears within ``max_gap_cm`` of where it vanished most likely sat there, so its
stop goes on. A speed test (threshold x gap duration) would allow any displacement over
a long gap (5 cm/s x 60 s = 300 cm, more than the cage), so it would bridge a mouse that
left and came back to sit elsewhere. A stop's duration does include the bridged gaps.

The detector is streaming: tracks arrive in chunks and only ``2h`` rows plus the sums
of a still-open stop are carried between chunks (whether a speed window crosses a break
depends only on the rows inside it), so memory does not grow with the recording and
results do not depend on the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmt_stereotype.config import LMTGeometry, StopParams
from lmt_stereotype.files import atomic_dir, write_table
from lmt_stereotype.lmt import Animal, LMTDatabase, TrackChunk
from lmt_stereotype.manifest import read_manifest
from lmt_stereotype.parallel import available_cores, pool_size, process_pool

STOP_COLUMNS = [
    "animal_id",
    "rfid",
    "start_frame",
    "end_frame",
    "start_s",
    "duration_s",
    "x_cm",
    "y_cm",
    "n_detections",
]


_FIXED = 2**24
"""Positions are summed as integers of 1/2**24 cm: exact, so a stop's mean position does
not depend on how its detections were split into chunks."""


def _fixed(v: np.ndarray) -> np.ndarray:
    return np.round(v * _FIXED).astype(np.int64)


@dataclass
class _OpenRun:
    start: int
    end: int
    sum_x: int
    sum_y: int
    n: int


class StopDetector:
    """Finds stops in one animal's track, fed chunk by chunk in frame order.

    ``feed`` returns the stops completed so far as a structured array
    (``start_frame, end_frame, x_cm, y_cm, n_detections``); ``finish`` closes the track.
    """

    _dtype = np.dtype(
        [("start_frame", "i8"), ("end_frame", "i8"), ("x_cm", "f8"), ("y_cm", "f8"), ("n_detections", "i8")]
    )

    def __init__(self, params: StopParams, fps: float):
        self.p = params
        self.fps = fps
        self.h = params.speed_window_frames // 2
        self._tail = TrackChunk(np.empty(0, np.int64), np.empty(0), np.empty(0))
        self._tail_has_speed = 0  # leading rows of the tail whose speed was already classified
        self._open: _OpenRun | None = None
        self._min_frames = params.min_duration_s * fps
        self._bridge_frames = math.floor(params.max_gap_s * fps + 1e-9)  # missing frames a bridge may span

    def feed(self, chunk: TrackChunk) -> np.ndarray:
        f = np.concatenate([self._tail.frame, chunk.frame])
        x = np.concatenate([self._tail.x_cm, chunk.x_cm])
        y = np.concatenate([self._tail.y_cm, chunk.y_cm])
        if self._tail.frame.size and chunk.frame.size and chunk.frame[0] <= self._tail.frame[-1]:
            raise ValueError("track chunks must arrive in increasing frame order")
        # Rows [lo, hi) get their speed classified now: those with h neighbours on each side.
        lo, hi = self._tail_has_speed, max(len(f) - self.h, self._tail_has_speed)
        stopped = self._stopped(f, x, y, lo, hi)
        out = self._runs(f[lo:hi], x[lo:hi], y[lo:hi], stopped)
        keep = max(hi - self.h, 0)
        self._tail = TrackChunk(f[keep:], x[keep:], y[keep:])
        self._tail_has_speed = hi - keep
        return out

    def finish(self) -> np.ndarray:
        """Close the track: the last ``h`` detections have no speed, so they stop nothing."""
        out = self._runs(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, bool), final=True)
        self._tail = TrackChunk(np.empty(0, np.int64), np.empty(0), np.empty(0))
        self._tail_has_speed = 0
        return out

    def _breaks(self, f: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per pair of consecutive rows ``(i, i+1)``: whether a break separates them."""
        missing = np.diff(f) - 1
        moved = np.hypot(np.diff(x), np.diff(y))
        return (missing > 0) & ((missing > self._bridge_frames) | ~(moved <= self.p.max_gap_cm))

    def _stopped(self, f: np.ndarray, x: np.ndarray, y: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Whether rows ``[lo, hi)`` are stopped; rows whose speed is undefined are not."""
        h = self.h
        stopped = np.zeros(hi - lo, dtype=bool)
        a, b = max(lo, h), min(hi, len(f) - h)  # rows with h neighbours on each side
        if a < b:
            ahead, behind = slice(a + h, b + h), slice(a - h, b - h)
            # breaks before row k: cum[k]; the window of row i crosses cum[i+h] - cum[i-h] of them
            cum = np.concatenate([[0], np.cumsum(self._breaks(f, x, y))])
            unbroken = cum[ahead] == cum[behind]
            span = f[ahead] - f[behind]
            dist = np.hypot(x[ahead] - x[behind], y[ahead] - y[behind])
            speed = dist * self.fps / span
            stopped[a - lo : b - lo] = unbroken & (speed <= self.p.speed_threshold_cm_s)
        return stopped

    def _runs(
        self, f: np.ndarray, x: np.ndarray, y: np.ndarray, stopped: np.ndarray, final: bool = False
    ) -> np.ndarray:
        """Group stopped rows into runs, merge with the open run, emit the finished ones.

        Rows arrive here once each, in order, so a run is a stretch of consecutive stopped
        rows; no break can lie inside one (both neighbours' speed windows hold it).
        """
        done: list[_OpenRun] = []
        if f.size:
            starts = stopped & ~np.concatenate([[False], stopped[:-1]])
            runs = self._block_runs(f, x, y, stopped, starts)
            # The open run ended on the row just before this block: it goes on if this block starts stopped.
            o = self._open
            if o is not None:
                if stopped[0]:
                    r = runs[0]
                    runs[0] = _OpenRun(o.start, r.end, o.sum_x + r.sum_x, o.sum_y + r.sum_y, o.n + r.n)
                else:
                    done.append(o)
                self._open = None
            if runs and stopped[-1]:
                self._open = runs.pop()
            done.extend(runs)
        if final and self._open is not None:
            done.append(self._open)
            self._open = None
        return np.array(
            [
                (r.start, r.end, r.sum_x / r.n / _FIXED, r.sum_y / r.n / _FIXED, r.n)
                for r in done
                if r.end - r.start + 1 >= self._min_frames - 1e-9
            ],
            dtype=self._dtype,
        )

    @staticmethod
    def _block_runs(f, x, y, stopped, starts) -> list[_OpenRun]:
        """Runs of one block, vectorised: each is a contiguous stretch of stopped rows."""
        sel = np.flatnonzero(stopped)
        if not sel.size:
            return []
        first = np.flatnonzero(starts)
        at = np.searchsorted(sel, first)
        last = np.append(sel[at[1:] - 1], sel[-1])
        n = np.diff(np.append(at, sel.size))
        sx = np.add.reduceat(_fixed(x[sel]), at)
        sy = np.add.reduceat(_fixed(y[sel]), at)
        return [_OpenRun(int(f[a]), int(f[b]), int(u), int(v), int(k)) for a, b, u, v, k in zip(first, last, sx, sy, n)]


def detect_track_stops(chunks: Iterable[TrackChunk], params: StopParams, fps: float) -> np.ndarray:
    """All stops of one animal's track (a structured array, see :class:`StopDetector`)."""
    det = StopDetector(params, fps)
    parts = [det.feed(c) for c in chunks]
    parts.append(det.finish())
    return np.concatenate(parts)


@dataclass(frozen=True)
class RecordingSummary:
    first_frame: int
    last_frame: int
    n_animals: int
    covering_index: bool


def recording_stops(
    path: Path, geometry: LMTGeometry, params: StopParams, threads: int = 1
) -> tuple[pd.DataFrame, RecordingSummary]:
    """Every stop of every identified animal of one LMT recording, one row per stop.

    ``start_s`` counts from the recording's first frame; ``x_cm``/``y_cm`` are the mean
    position during the stop, from the arena's top-left corner. ``threads`` animals are
    read at once (the reader releases the GIL); the result does not depend on it.
    """
    with LMTDatabase(path, geometry) as db:
        first_frame, last_frame = db.frame_range()
        animals = db.animals()
        summary = RecordingSummary(first_frame, last_frame, len(animals), db.has_covering_index)

        def animal_stops(animal: Animal) -> pd.DataFrame:
            df = pd.DataFrame(detect_track_stops(db.iter_track(animal.id), params, geometry.fps))
            df.insert(0, "animal_id", animal.id)
            df.insert(1, "rfid", animal.rfid)
            return df

        with ThreadPoolExecutor(max(1, min(threads, len(animals)))) as pool:
            frames = list(pool.map(animal_stops, animals))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=STOP_COLUMNS)
    df["start_s"] = (df["start_frame"] - first_frame) / geometry.fps
    df["duration_s"] = (df["end_frame"] - df["start_frame"] + 1) / geometry.fps
    df["rfid"] = df["rfid"].astype("string")
    df = df[STOP_COLUMNS].astype(
        {"animal_id": "int64", "start_frame": "int64", "end_frame": "int64", "n_detections": "int64"}
    )
    return df, summary


def _recording_job(
    raw: Path, recording: str, recording_id: str, folder: Path, geometry: LMTGeometry, params: StopParams, threads: int
) -> dict:
    """One recording's stops into ``folder``; its summary row (``recording``: its path relative to ``raw``)."""
    path = raw / recording
    stops, info = recording_stops(path, geometry, params, threads)
    write_table(stops, folder / f"{recording_id}.parquet")
    with LMTDatabase(path, geometry) as db:
        start_ms, identity = db.start_ms(), db.identity()
    return {
        "recording_id": recording_id,
        "recording": recording,
        "identity": identity,
        "start_ms": start_ms,
        "first_frame": info.first_frame,
        "last_frame": info.last_frame,
        "duration_s": (info.last_frame - info.first_frame + 1) / geometry.fps,
        "n_animals": info.n_animals,
        "n_stops": len(stops),
        "covering_index": info.covering_index,
    }


def detect_cohort_stops(
    manifest_path: Path,
    out_dir: Path,
    geometry: LMTGeometry,
    params: StopParams,
    *,
    progress: bool = False,
    workers: int = 0,
) -> pd.DataFrame:
    """Stops of every recording named in the manifest, one parquet file per recording.

    Writes ``out_dir/<recording_id>.parquet`` and ``out_dir/recordings.csv`` (identity,
    frame range and stop count per recording); the folder is replaced atomically as a whole.
    Recordings are read by ``workers`` processes at once (0: one per core), each reading
    its animals in as many threads as leaves every core busy; the results do not depend
    on how many. Returns the per-recording summary.
    """
    manifest = read_manifest(manifest_path)
    recordings = manifest.drop_duplicates("recording")[["recording", "recording_id"]]
    threads = max(1, available_cores() // pool_size(len(recordings), workers))
    with atomic_dir(out_dir) as tmp, process_pool(len(recordings), workers) as pool:
        futures = [
            pool.submit(
                _recording_job, manifest_path.parent, rec.recording, rec.recording_id, tmp, geometry, params, threads
            )
            for rec in recordings.itertuples(index=False)
        ]
        with tqdm(total=len(futures), desc="stops", unit="rec", disable=not progress) as bar:
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update()
            except BaseException:  # a bad recording or Ctrl-C: read no more of them
                for future in futures:
                    future.cancel()
                raise
        summary = pd.DataFrame([f.result() for f in futures])  # manifest order, whatever finished first
        write_table(summary, tmp / "recordings.csv")
    return summary
