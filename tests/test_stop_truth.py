"""Stops against the simulator's planted truth, with mice hidden in the house as real ones are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.mice import adult_females
from helpers.params import DEMO, varied

from lmt_stereotype import simulation
from lmt_stereotype.simulation.behaviour import STOP_MEDIAN_S
from lmt_stereotype.stops import recording_stops

PROFILE = simulation.Profile(interval_s=30.0, n_intervals=12, anonymous_fraction=0.1, data_mask_px=6)
"""Six and a half minutes of the demo's compressed day (10:00 to 23:00): rests in the house of a few seconds."""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    path = tmp_path_factory.mktemp("truth") / "rec.sqlite"
    params = DEMO.model_copy(update={"histograms": varied(DEMO.histograms, interval_s=30.0, n_intervals=12)})
    mice = adult_females(params)
    truth = path.with_suffix(".parquet")
    simulation.simulate_recording(path, mice, params, PROFILE, np.random.default_rng(7), start_hour=10.0, truth=truth)
    return path, pd.read_parquet(truth)


def score(recording: tuple[Path, pd.DataFrame], **rule: float) -> simulation.StopScore:
    path, planted = recording
    detected, _ = recording_stops(path, DEMO.lmt, varied(DEMO.stops, **rule))
    return simulation.score_stops(detected, planted, DEMO.lmt.fps)


def test_resting_mice_are_hidden_in_the_house_for_long_stretches(recording):
    _, planted = recording
    house = planted[planted.site == "house"]
    hidden = 1 - house.seen_frames.sum() / (house.end_frame - house.start_frame + 1).sum()
    assert len(house) > 100 and 0.2 < hidden < 0.6
    others = planted[planted.site != "house"]
    assert (others.seen_frames / (others.end_frame - others.start_frame + 1)).mean() > 0.85  # hides run on
    assert (planted.end_frame - planted.start_frame + 1).median() / 30 < STOP_MEDIAN_S[True] * 1.5


def test_the_default_rule_finds_the_planted_stops_and_little_else(recording):
    s = score(recording)  # params.yaml: max_gap_s 120, max_gap_cm 2
    assert s.recall_seen >= 0.93 and s.precision >= 0.93


def test_bridging_gaps_where_the_mouse_reappears_beats_the_old_rule_and_lmt_analysis_s_speed(recording):
    new = score(recording)
    old = score(recording, max_gap_s=0.5, max_gap_cm=1e9)  # every gap up to 15 frames, wherever it reappeared
    lmt_analysis = score(recording, speed_window_frames=3, max_gap_s=0.0)  # one missed frame splits a stop
    assert new.recall > old.recall + 0.05 and new.precision > old.precision
    assert new.precision > lmt_analysis.precision + 0.1 and new.recall > lmt_analysis.recall + 0.05


def test_a_stop_ends_where_the_mouse_reappears_elsewhere(recording):
    """Without the distance rule, a mouse that left its rest unseen would be still there: rests merge."""
    anywhere = score(recording, max_gap_cm=1e9)
    assert score(recording).recall_seen > anywhere.recall_seen + 0.03
