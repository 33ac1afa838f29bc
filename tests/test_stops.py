"""A stop is centre-of-mass speed <= 5 cm/s held for >= 1 s (30 fps)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.lmt_files import FPS, GEOMETRY, track
from helpers.params import DEMO, varied

from lmt_stereotype.lmt import TrackChunk
from lmt_stereotype.stops import STOP_COLUMNS, detect_track_stops, recording_stops

PARAMS = DEMO.stops
H = PARAMS.speed_window_frames // 2


def stops_of(x, y, frames=None, params=PARAMS, chunk=None):
    frames = np.arange(len(x)) if frames is None else np.asarray(frames)
    chunk = chunk or len(frames)
    chunks = [
        TrackChunk(frames[i : i + chunk], x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(frames), chunk)
    ]
    return detect_track_stops(chunks, params, FPS)


def test_a_still_period_between_moves_is_one_stop_at_its_position():
    x, y = track([("move", 1, 20, 0), ("stay", 2, 0, 0), ("move", 1, 20, 0)])
    (stop,) = stops_of(x, y)
    # still from frame 30 to 89; the 7-frame window may shave up to h-1 frames off each end
    assert 30 - 1 <= stop["start_frame"] <= 30 + H - 1
    assert 89 - H + 1 <= stop["end_frame"] <= 89 + 1
    assert stop["x_cm"] == pytest.approx(10 + 20, abs=0.2)
    assert stop["y_cm"] == pytest.approx(10, abs=1e-9)


def test_a_pause_shorter_than_one_second_is_not_a_stop():
    x, y = track([("move", 1, 20, 0), ("stay", 0.6, 0, 0), ("move", 1, 20, 0)])
    assert len(stops_of(x, y)) == 0


def test_slow_drift_below_threshold_is_a_stop_and_above_is_not():
    x, y = track([("move", 1, 20, 0), ("move", 3, 4.5, 0), ("move", 1, 20, 0)])
    assert len(stops_of(x, y)) == 1
    x, y = track([("move", 1, 20, 0), ("move", 3, 5.5, 0), ("move", 1, 20, 0)])
    assert len(stops_of(x, y)) == 0


def test_threshold_and_minimum_duration_come_from_params():
    x, y = track([("move", 1, 20, 0), ("move", 3, 4.5, 0), ("move", 1, 20, 0)])
    assert len(stops_of(x, y, params=varied(DEMO.stops, speed_threshold_cm_s=4.0))) == 0
    assert len(stops_of(x, y, params=varied(DEMO.stops, min_duration_s=4.0))) == 0


def test_duration_counts_frames_inclusively():
    x = np.zeros(200)
    (stop,) = stops_of(x, x)
    assert stop["start_frame"] == H and stop["end_frame"] == 200 - 1 - H
    assert stop["n_detections"] == 200 - 2 * H


def test_a_short_detection_gap_does_not_end_a_stop():
    x = np.zeros(120)
    frames = np.r_[0:60, 70:130]  # 10 frames missing (< max_gap_frames = 15)
    (stop,) = stops_of(x, x, frames)
    assert stop["start_frame"] < 60 < 70 < stop["end_frame"]
    assert stop["n_detections"] == 120 - 2 * H


def test_a_stop_never_bridges_a_long_gap():
    x = np.zeros(120)
    frames = np.r_[0:60, 100:160]  # 40 frames (1.3 s) missing
    stops = stops_of(x, x, frames)
    assert len(stops) == 2
    assert stops[0]["end_frame"] < 60 and stops[1]["start_frame"] >= 100


def test_results_do_not_depend_on_chunk_size():
    rng = np.random.default_rng(1)
    x, y = track(
        [
            ("move", 1, 20, 5),
            ("stay", 2, 0, 0),
            ("move", 0.5, -15, 10),
            ("stay", 1.5, 0, 0),
            ("move", 1, 0, -20),
            ("stay", 3, 0, 0),
        ]
    )
    x = x + rng.normal(0, 0.03, len(x))
    frames = np.delete(np.arange(len(x) + 20), rng.choice(len(x) + 20, 20, replace=False))
    whole = stops_of(x, y, frames)
    assert len(whole) == 3
    for chunk in (1, 2, 3, 6, 7, 13, 64):
        np.testing.assert_array_equal(stops_of(x, y, frames, chunk=chunk), whole)


def test_stops_never_overlap_and_are_long_enough(two_stop_db):
    table, _ = recording_stops(two_stop_db, GEOMETRY, PARAMS)
    for _, mine in table.groupby("animal_id"):
        assert (mine["start_frame"].to_numpy()[1:] > mine["end_frame"].to_numpy()[:-1]).all()
    assert (table["duration_s"] >= PARAMS.min_duration_s).all()


def test_recording_stops_table_has_the_documented_columns(two_stop_db):
    table, summary = recording_stops(two_stop_db, GEOMETRY, PARAMS)
    assert list(table.columns) == STOP_COLUMNS
    assert table["animal_id"].tolist() == [1, 1]  # animal 2 never stops; anonymous blobs are nobody
    assert table["rfid"].tolist() == ["000004100001"] * 2
    first, second = table.itertuples()
    assert first.start_s == pytest.approx((first.start_frame - 1) / FPS)  # from the recording's first frame
    assert first.duration_s == pytest.approx((first.end_frame - first.start_frame + 1) / FPS)
    assert second.duration_s == pytest.approx(3, abs=0.3)
    assert second.x_cm == pytest.approx(10 + 40, abs=0.2)  # 2 s at 20 cm/s from x = 10 cm
    assert summary.first_frame == 1 and summary.n_animals == 2 and summary.covering_index
