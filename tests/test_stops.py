"""A stop is centre-of-mass speed <= 5 cm/s held for >= 1 s (30 fps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.lmt_files import FPS, GEOMETRY, still_track, track, write_lmt
from helpers.params import DEMO, varied

from lmt_stereotype.lmt import TrackChunk
from lmt_stereotype.stops import STOP_COLUMNS, detect_cohort_stops, detect_track_stops, recording_stops

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
    frames = np.r_[0:60, 70:130]  # 10 frames missing, the mouse reappears where it was
    (stop,) = stops_of(x, x, frames)
    assert stop["start_frame"] < 60 < 70 < stop["end_frame"]
    assert stop["n_detections"] == 120 - 2 * H


def hidden_for_two_seconds(moved_cm=0.0, still_after_s=2.0):
    """Still 2 s at (10, 10) cm, hidden 2 s (60 missing frames), still ``still_after_s`` at
    ``moved_cm`` to the right: (frames, x, y)."""
    after = int(round(still_after_s * FPS))
    frames = np.r_[0:60, 120 : 120 + after]
    x = np.r_[np.full(60, 10.0), np.full(after, 10.0 + moved_cm)]
    return frames, x, np.full(len(frames), 10.0)


def test_a_still_mouse_hidden_for_2_s_that_reappears_in_place_stays_one_stop():
    frames, x, y = hidden_for_two_seconds()
    (stop,) = stops_of(x, y, frames, params=varied(PARAMS, max_gap_s=5.0, max_gap_cm=2.0))
    assert (stop["start_frame"], stop["end_frame"]) == (H, 179 - H)  # its duration counts the hidden 2 s
    assert stop["n_detections"] == 120 - 2 * H
    assert (stop["x_cm"], stop["y_cm"]) == (10.0, 10.0)


def test_a_gap_longer_than_max_gap_s_ends_the_stop_even_where_the_mouse_reappears_in_place():
    frames, x, y = hidden_for_two_seconds()
    first, second = stops_of(x, y, frames, params=varied(PARAMS, max_gap_s=0.5, max_gap_cm=2.0))
    assert (first["start_frame"], first["end_frame"]) == (H, 59 - H)
    assert (second["start_frame"], second["end_frame"]) == (120 + H, 179 - H)


def test_a_mouse_that_reappears_5_cm_away_after_a_gap_ends_its_stop_there():
    params = varied(PARAMS, max_gap_s=5.0, max_gap_cm=2.0)
    # 5 cm in 2 s is 2.5 cm/s: under the speed threshold, yet the mouse did not sit still
    frames, x, y = hidden_for_two_seconds(moved_cm=5.0)
    first, second = stops_of(x, y, frames, params=params)
    assert (first["start_frame"], first["end_frame"]) == (H, 59 - H)
    assert (second["start_frame"], second["end_frame"]) == (120 + H, 179 - H)  # a new stop: still again for 2 s
    assert (first["x_cm"], second["x_cm"]) == (10.0, 15.0)
    frames, x, y = hidden_for_two_seconds(moved_cm=5.0, still_after_s=0.5)
    (only,) = stops_of(x, y, frames, params=params)  # still for 0.5 s after the gap: too short to stop
    assert only["end_frame"] == 59 - H


def test_a_gap_of_more_than_max_gap_s_is_never_bridged():
    x = np.zeros(120)
    params = varied(PARAMS, max_gap_s=5.0)
    frames = np.r_[0:60, 210:270]  # 150 frames (5 s) missing: bridged; one more is not
    assert len(stops_of(x, x, frames, params=params)) == 1
    stops = stops_of(x, x, frames + np.r_[np.zeros(60, int), np.ones(60, int)], params=params)
    assert len(stops) == 2
    assert stops[0]["end_frame"] < 60 and stops[1]["start_frame"] >= 211


def test_without_gaps_bridged_and_a_3_frame_window_one_missing_frame_splits_a_stop_as_lmt_analysis_does():
    # lmt-analysis's getSpeed: |p[t+1] - p[t-1]| over 2 frames, undefined next to a missing frame
    params = varied(PARAMS, speed_window_frames=3, max_gap_s=0.0)
    frames = np.delete(np.arange(91), 45)  # 3 s still, frame 45 not detected
    x = np.zeros(90)
    first, second = stops_of(x, x, frames, params=params)
    assert (first["start_frame"], first["end_frame"]) == (1, 43)  # 44 and 46 have no speed
    assert (second["start_frame"], second["end_frame"]) == (47, 89)
    (whole,) = stops_of(x, x, frames, params=varied(params, max_gap_s=1 / FPS))  # one frame bridged
    assert (whole["start_frame"], whole["end_frame"]) == (1, 89)


def test_consecutive_detections_are_never_a_break_however_far_apart():
    # a 3 cm jump between consecutive frames is no gap: only its speed counts (here 90 cm/s)
    x = np.r_[np.zeros(60), np.full(60, 3.0)]
    first, second = stops_of(x, x)
    assert first["end_frame"] < 60 <= second["start_frame"]
    assert len(stops_of(x, x, params=varied(PARAMS, speed_threshold_cm_s=1000.0))) == 1


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


def test_recordings_csv_keeps_each_recording_s_path_relative_to_the_raw_folder(tmp_path):
    """``juvenile/a.sqlite`` and ``adult/a.sqlite`` are two recordings, also in ``recordings.csv``."""
    raw = tmp_path / "raw"
    for age in ("juvenile", "adult"):
        (raw / age).mkdir(parents=True)
        write_lmt(raw / age / "a.sqlite", {1: still_track()})
    manifest = raw / "manifest.csv"
    manifest.write_text(
        "recording,animal,cage,sex,age\njuvenile/a.sqlite,1,c1,F,juvenile\nadult/a.sqlite,1,c1,F,adult\n"
    )
    summary = detect_cohort_stops(manifest, tmp_path / "stops", DEMO.lmt, DEMO.stops, workers=1)
    assert summary["recording"].tolist() == ["juvenile/a.sqlite", "adult/a.sqlite"]
    assert summary["recording_id"].tolist() == ["juvenile__a", "adult__a"]
    written = pd.read_csv(tmp_path / "stops" / "recordings.csv")
    assert written["recording"].tolist() == ["juvenile/a.sqlite", "adult/a.sqlite"]
