"""The room's clock: stack intervals placed at the time of day they happened, dark phases where they were."""

from __future__ import annotations

import json

import pytest

from lmt_stereotype.clock import clock_hour, dark_spans, interval_start_hours, seconds_per_clock_hour
from lmt_stereotype.simulation.lmt_writer import START_MS


def test_the_demo_s_180_s_intervals_span_6_of_the_simulator_s_hours():
    """The simulator makes 30 s one hour: 12 intervals of 180 s cover 3 days, 4 intervals a day."""
    hours = interval_start_hours(10.0, 12, 180.0, 30.0)
    assert hours.tolist() == [10, 16, 22, 28, 34, 40, 46, 52, 58, 64, 70, 76]
    assert (hours % 24).tolist() == [10, 16, 22, 4] * 3


def test_real_intervals_are_real_hours():
    assert interval_start_hours(21.5, 3, 3600.0, 3600.0).tolist() == [21.5, 22.5, 23.5]


def test_dark_phases_are_the_hours_outside_lights_on_every_day():
    assert dark_spans(10, 82, (8, 20)) == [(20, 32), (44, 56), (68, 80)]
    assert dark_spans(0, 24, (20, 8)) == [(8, 20)]  # lights on over midnight: dark by day
    assert dark_spans(9, 15, (8, 20)) == []


def test_the_clock_of_a_first_frame_is_read_in_the_room_s_time_zone():
    assert clock_hour(START_MS, "UTC") == pytest.approx(0.0)  # the simulator's day 0 starts at midnight
    assert clock_hour(START_MS + 10 * 3_600_000, "Europe/Paris") == pytest.approx(11.0)  # January: UTC+1
    assert clock_hour(START_MS + 690 * 60_000, "UTC") == pytest.approx(11.5)


def test_a_simulated_cohort_says_how_fast_its_clock_runs_and_a_real_one_runs_in_real_time(tmp_path):
    assert seconds_per_clock_hour(tmp_path) == 3600.0
    (tmp_path / "simulation.json").write_text(json.dumps({"clock": {"seconds_per_hour": 30.0}}))
    assert seconds_per_clock_hour(tmp_path) == 30.0
