"""Properties of stop detection that hold for any track (hypothesis).

Tracks are generated piecewise: still stretches with jitter below and above the speed
threshold, moves of random speed and direction, short and long detection gaps after which
the mouse reappears where it vanished or some way off, and single frames dropped at
random; some wander outside the arena. The definition checked is the one in the
docstring of :mod:`lmt_stereotype.stops`.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers.lmt_files import GEOMETRY, write_lmt
from helpers.params import DEMO, varied
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmt_stereotype.config import StopParams
from lmt_stereotype.histograms import stop_histograms
from lmt_stereotype.lmt import TrackChunk
from lmt_stereotype.stops import StopDetector, detect_track_stops, recording_stops

pytestmark = pytest.mark.slow  # hypothesis: hundreds of generated tracks per property

# Reproducible in CI: the same examples on every run, and no example database written.
FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None)
SLOW = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GEN_FPS = 30.0  # frame rate the generated speeds refer to
IN_ARENA = st.floats(0, GEOMETRY.arena_size_cm)

# --- strategies --------------------------------------------------------------------------------

stop_params = st.builds(
    StopParams,
    speed_threshold_cm_s=st.sampled_from([2.0, 5.0, 8.0]),
    min_duration_s=st.sampled_from([0.2, 0.5, 1.0, 1.5]),
    speed_window_frames=st.sampled_from([3, 5, 7, 9]),
    # seconds: some a whole number of frames at 30 fps (the rounding edge), some anything up to 1 s
    max_gap_s=st.one_of(st.integers(0, 30).map(lambda k: k / 30), st.floats(0, 1.0)),
    max_gap_cm=st.floats(0.1, 5),
)
frame_rates = st.sampled_from([25.0, 30.0])

still = st.tuples(st.just("still"), st.integers(1, 90), st.floats(0, 0.8))
segments = st.one_of(
    # still: n frames jittering uniformly by up to +-amplitude cm around a point (speeds from 0 to
    # well above the threshold); twice as likely as the others, so that most tracks hold stops
    still,
    still,
    # move: n frames at a constant speed (cm/s) in one direction (radians)
    st.tuples(st.just("move"), st.integers(1, 60), st.floats(0, 40), st.floats(0, 2 * math.pi)),
    # gap: n frames without a detection, after which the mouse reappears in place or moved by
    # some cm in one direction (short gaps that end near where it vanished are bridged)
    st.tuples(
        st.just("gap"),
        st.integers(1, 45),
        st.one_of(st.just(0.0), st.floats(0, 8)),
        st.floats(0, 2 * math.pi),
    ),
)


@st.composite
def tracks(draw, max_segments: int = 12, start=IN_ARENA, still_first: bool = False):
    """(frames, x_cm, y_cm) of one animal, frames strictly increasing; ``still_first``: it
    starts by sitting (almost) still for 2 to 3 s, so that it (almost) surely stops."""
    parts = draw(st.lists(segments, min_size=2, max_size=max_segments))
    if still_first:
        parts.insert(0, draw(st.tuples(st.just("still"), st.integers(60, 90), st.floats(0, 0.02))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    drop = draw(st.sampled_from([0.0, 0.05, 0.3]))  # share of single frames lost at random
    frame = draw(st.integers(0, 1000))
    pos = np.array([draw(start), draw(start)])
    frames, xy = [], []
    for part in parts:
        if part[0] == "gap":
            frame += part[1]
            pos = pos + part[2] * np.array([math.cos(part[3]), math.sin(part[3])])
            continue
        n = part[1]
        if part[0] == "still":
            p = pos + rng.uniform(-part[2], part[2], (n, 2))
        else:
            step = part[2] / GEN_FPS * np.array([math.cos(part[3]), math.sin(part[3])])
            p = pos + np.arange(1, n + 1)[:, None] * step
            pos = p[-1]
        frames.append(np.arange(frame, frame + n))
        xy.append(p)
        frame += n
    if not frames:  # only gaps
        return np.empty(0, np.int64), np.empty(0), np.empty(0)
    f, p = np.concatenate(frames), np.concatenate(xy)
    kept = rng.random(len(f)) >= drop
    return f[kept].astype(np.int64), p[kept, 0], p[kept, 1]


# --- helpers -----------------------------------------------------------------------------------


def detect(track, params: StopParams, fps: float) -> np.ndarray:
    frames, x, y = track
    return detect_track_stops([TrackChunk(frames, x, y)], params, fps)


def breaks(track, params: StopParams, fps: float) -> np.ndarray:
    """Per pair of consecutive detections ``(i, i+1)``: whether it is a break.

    Straight from the docstring: a gap of ``d - 1`` missing frames (``d > 1``) is bridged
    when ``d - 1 <= floor(max_gap_s * fps + 1e-9)`` and the mouse reappeared within
    ``max_gap_cm`` of where it vanished; any other gap is a break; no gap is none.
    """
    frames, x, y = track
    bridge_frames = math.floor(params.max_gap_s * fps + 1e-9)
    out = np.zeros(max(len(frames) - 1, 0), bool)
    for i in range(len(frames) - 1):
        missing = int(frames[i + 1] - frames[i]) - 1
        moved = np.hypot(x[i + 1] - x[i], y[i + 1] - y[i])
        bridged = missing <= bridge_frames and moved <= params.max_gap_cm
        out[i] = missing > 0 and not bridged
    return out


def speed_window(track, params: StopParams, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: whether its speed is defined, and that speed (NaN where undefined).

    Straight from the docstring: centred difference over the h-th detections before and
    after, divided by their true time apart; undefined for the first and last h detections
    and where a break lies between any two consecutive detections of the window. (Written
    as ``distance * fps / span`` like the detector, so that a speed equal to the threshold
    is not split by a last-bit rounding difference.)
    """
    frames, x, y = track
    h = params.speed_window_frames // 2
    brk = breaks(track, params, fps)
    defined = np.zeros(len(frames), bool)
    speed = np.full(len(frames), np.nan)
    for i in range(h, len(frames) - h):
        if not brk[i - h : i + h].any():  # pairs (i-h, i-h+1) .. (i+h-1, i+h)
            span = int(frames[i + h] - frames[i - h])
            defined[i] = True
            speed[i] = np.hypot(x[i + h] - x[i - h], y[i + h] - y[i - h]) * fps / span
    return defined, speed


def reference_stops(track, params: StopParams, fps: float) -> list[tuple[int, int, float, float, int]]:
    """Stops by the definition, one detection at a time: maximal runs of consecutive slow
    detections with no break inside, lasting at least ``min_duration_s``."""
    frames, x, y = track
    defined, speed = speed_window(track, params, fps)
    brk = breaks(track, params, fps)
    slow = defined & (speed <= params.speed_threshold_cm_s)
    found, i = [], 0
    while i < len(frames):
        if not slow[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(frames) and slow[j + 1] and not brk[j]:
            j += 1
        if (frames[j] - frames[i] + 1) / fps >= params.min_duration_s:
            found.append((int(frames[i]), int(frames[j]), x[i : j + 1].mean(), y[i : j + 1].mean(), j - i + 1))
        i = j + 1
    return found


def split(track, cuts: list[int]) -> list[TrackChunk]:
    frames, x, y = track
    bounds = [0, *sorted(cuts), len(frames)]
    return [TrackChunk(frames[a:b], x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


# --- on the detector ---------------------------------------------------------------------------


@FAST
@given(track=tracks(), params=stop_params, fps=frame_rates)
def test_stops_of_a_track_never_overlap_are_in_time_order_and_last_at_least_the_minimum(track, params, fps):
    stops = detect(track, params, fps)
    assert (stops["start_frame"] <= stops["end_frame"]).all()
    assert (stops["end_frame"][:-1] < stops["start_frame"][1:]).all()
    assert ((stops["end_frame"] - stops["start_frame"] + 1) / fps >= params.min_duration_s).all()


@FAST
@given(track=tracks(), params=stop_params, fps=frame_rates)
def test_every_detection_inside_a_stop_is_counted_slow_and_surrounds_its_mean_position(track, params, fps):
    frames, x, y = track
    defined, speed = speed_window(track, params, fps)
    brk = breaks(track, params, fps)
    for stop in detect(track, params, fps):
        inside = (frames >= stop["start_frame"]) & (frames <= stop["end_frame"])
        assert frames[inside][[0, -1]].tolist() == [stop["start_frame"], stop["end_frame"]]
        assert stop["n_detections"] == inside.sum() <= stop["end_frame"] - stop["start_frame"] + 1
        assert defined[inside].all() and (speed[inside] <= params.speed_threshold_cm_s).all()
        assert not brk[np.flatnonzero(inside)[:-1]].any()  # never continues across a break
        assert x[inside].min() - 1e-6 <= stop["x_cm"] <= x[inside].max() + 1e-6
        assert y[inside].min() - 1e-6 <= stop["y_cm"] <= y[inside].max() + 1e-6


@FAST
@given(track=tracks(), params=stop_params, fps=frame_rates)
def test_stops_are_exactly_the_maximal_slow_runs_of_the_definition(track, params, fps):
    got = detect(track, params, fps)
    want = reference_stops(track, params, fps)
    assert [(s["start_frame"], s["end_frame"], s["n_detections"]) for s in got] == [(a, b, n) for a, b, _, _, n in want]
    for stop, (_, _, x, y, _) in zip(got, want):
        assert stop["x_cm"] == pytest.approx(x, abs=1e-6) and stop["y_cm"] == pytest.approx(y, abs=1e-6)


@st.composite
def chunked_tracks(draw):
    """A track and cut points splitting it into chunks: some empty, some of a single row."""
    track = draw(tracks())
    n = len(track[0])
    if draw(st.booleans()):
        cuts = list(range(1, n))  # one row per chunk
    else:
        cuts = draw(st.lists(st.integers(0, n), max_size=40))  # repeated cuts: empty chunks
    return track, cuts


@FAST
@given(case=chunked_tracks(), params=stop_params, fps=frame_rates)
def test_splitting_a_track_into_chunks_anywhere_gives_exactly_the_same_stops(case, params, fps):
    track, cuts = case
    whole = detect(track, params, fps)
    det = StopDetector(params, fps)
    parts = [det.feed(chunk) for chunk in split(track, cuts)]
    parts.append(det.finish())
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@FAST
@given(
    track=tracks(start=st.floats(-30, 80)),
    params=stop_params,
    grid=st.sampled_from([1, 2, 7, 30]),
)
def test_every_stop_lands_in_one_tile_of_the_grid_even_off_the_arena(track, params, grid):
    stops = detect(track, params, GEN_FPS)
    size = GEOMETRY.arena_size_cm
    cell = size / grid
    hist = varied(DEMO.histograms, n_intervals=1, interval_s=1e9, grid=grid)
    start_s = stops["start_frame"] / GEN_FPS
    total = stop_histograms(start_s, stops["x_cm"], stops["y_cm"], hist, size)
    assert total.shape == (1, grid, grid) and total.sum() == len(stops)  # none lost off the grid
    for s, stop in zip(start_s, stops):
        one = stop_histograms(np.array([s]), np.array([stop["x_cm"]]), np.array([stop["y_cm"]]), hist, size)
        ((t, row, col),) = np.argwhere(one)
        assert t == 0 and one.sum() == 1
        for v, tile in ((stop["x_cm"], col), (stop["y_cm"], row)):
            if v < 0:
                assert tile == 0
            elif v >= size:
                assert tile == grid - 1
            else:  # the tile that holds the position
                assert tile * cell - 1e-9 <= v <= (tile + 1) * cell + 1e-9


# --- through an LMT database -------------------------------------------------------------------


@st.composite
def noisy_recordings(draw):
    """Tracks of 1-3 animals (the first one stops), and what is added to their database:
    anonymous detections (some exactly where an animal is), exact copies of random rows,
    and how it is read (rows per chunk, threads)."""
    n_animals = draw(st.integers(1, 3))
    animals = {}
    for aid in range(1, n_animals + 1):
        animals[aid] = draw(tracks(max_segments=6, still_first=aid == 1))
    anonymous = draw(
        st.lists(
            st.tuples(
                st.integers(0, 10**6),  # at the frame of this identified detection (modulo their number)
                st.one_of(st.none(), st.tuples(st.floats(0, 500), st.floats(0, 400))),  # None: at its place
            ),
            max_size=30,
        )
    )
    return {
        "animals": animals,
        "anonymous": anonymous,
        "random_anonymous": draw(st.integers(0, 100)),
        "duplicate_share": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        "duplicate_seed": draw(st.integers(0, 2**32 - 1)),
        "chunk_rows": draw(st.one_of(st.just(1), st.integers(1, 400))),
        "threads": draw(st.integers(1, 4)),
    }


def _add_noise(db: Path, case: dict) -> None:
    con = sqlite3.connect(db)
    rows = []
    identified = con.execute("SELECT FRAMENUMBER, MASS_X, MASS_Y FROM DETECTION WHERE ANIMALID IS NOT NULL").fetchall()
    for pick, where in case["anonymous"]:
        frame, mx, my = identified[pick % len(identified)]
        rows.append((frame, None, *(where or (mx, my)), "<root/>"))
    con.executemany("INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) VALUES (?, ?, ?, ?, ?)", rows)
    ids = [r[0] for r in con.execute("SELECT ID FROM DETECTION ORDER BY ID")]
    rng = np.random.default_rng(case["duplicate_seed"])
    copied = [int(i) for i in ids if rng.random() < case["duplicate_share"]]
    con.executemany(
        "INSERT INTO DETECTION (FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA) "
        "SELECT FRAMENUMBER, ANIMALID, MASS_X, MASS_Y, DATA FROM DETECTION WHERE ID = ?",
        [(i,) for i in copied],
    )
    con.commit()
    con.close()


@SLOW
@given(case=noisy_recordings(), params=stop_params)
def test_anonymous_detections_duplicated_rows_chunk_size_and_threads_leave_the_stops_unchanged(case, params):
    with tempfile.TemporaryDirectory() as tmp:
        clean = write_lmt(Path(tmp) / "clean.sqlite", case["animals"])
        noisy = write_lmt(Path(tmp) / "noisy.sqlite", case["animals"], anonymous=case["random_anonymous"])
        _add_noise(noisy, case)
        want, _ = recording_stops(clean, GEOMETRY, params)
        geometry = GEOMETRY.model_copy(update={"chunk_rows": case["chunk_rows"]})
        got, _ = recording_stops(noisy, geometry, params, threads=case["threads"])
    for _, mine in want.groupby("animal_id"):
        assert (mine["end_frame"].to_numpy()[:-1] < mine["start_frame"].to_numpy()[1:]).all()
    assert (want["duration_s"] >= params.min_duration_s).all()
    assert (want["n_detections"] <= want["end_frame"] - want["start_frame"] + 1).all()
    assert got.equals(want)
