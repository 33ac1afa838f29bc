"""A stack counts stops per (interval of its start, tile of its mean position)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from helpers.params import DEMO, varied

from lmt_stereotype.histograms import Stacks, build_stacks, stop_histograms

PAPER = varied(DEMO.histograms, n_intervals=72, interval_s=3600, grid=30)


def test_stack_has_the_paper_shape_and_sums_to_the_stops_inside_the_window():
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 80 * 3600, 1000)  # some stops after the 72 h window
    x, y = rng.uniform(0, 50, 1000), rng.uniform(0, 50, 1000)
    stack = stop_histograms(start, x, y, PAPER, 50.0)
    assert stack.shape == (72, 30, 30)
    assert stack.sum() == (start < 72 * 3600).sum()


def test_a_stop_lands_in_the_interval_of_its_start_and_the_tile_of_its_position():
    stack = stop_histograms(np.array([3599.9, 3600.0]), np.array([0.1, 49.9]), np.array([49.9, 0.1]), PAPER, 50.0)
    assert stack[0, 29, 0] == 1  # hour 0, bottom-left tile (row = y, y pointing down)
    assert stack[1, 0, 29] == 1  # hour 1, top-right tile
    assert stack.sum() == 2


def test_stops_outside_the_arena_are_clipped_to_the_border_tile():
    stack = stop_histograms(np.zeros(3), np.array([-2.0, 51.0, 25.0]), np.array([25.0, 25.0, 60.0]), PAPER, 50.0)
    assert stack[0, 15, 0] == 1 and stack[0, 15, 29] == 1 and stack[0, 29, 15] == 1


def test_grid_and_intervals_are_parameters():
    params = varied(DEMO.histograms, n_intervals=4, interval_s=10, grid=5)
    stack = stop_histograms(np.array([0, 15, 39, 45]), np.full(4, 12.0), np.full(4, 1.0), params, 50.0)
    assert stack.shape == (4, 5, 5)
    assert stack[:, 0, 1].tolist() == [1, 1, 0, 1]


def test_stacks_round_trip_through_one_file_with_labels_cages_and_ids(tmp_path):
    samples = pd.DataFrame(
        {
            "recording_id": ["r1", "r1", "r2"],
            "animal_id": [1, 2, 1],
            "cage": ["c1", "c1", "c2"],
            "label": ["AF", "JF", "AM"],
            "sample": ["r1:1", "r1:2", "r2:1"],
            "start_hour": [10.0, 10.0, 21.5],
            "seconds_per_hour": [3600.0] * 3,
        }
    )
    stops = {
        "r1": pd.DataFrame(
            {"animal_id": [1, 1, 2], "start_s": [0.0, 5.0, 1.0], "x_cm": [1.0, 2.0, 3.0], "y_cm": [1.0, 1.0, 1.0]}
        ),
        "r2": pd.DataFrame({"animal_id": [1], "start_s": [2.0], "x_cm": [40.0], "y_cm": [40.0]}),
    }
    params = varied(DEMO.histograms, n_intervals=2, interval_s=10, grid=10)
    stacks = build_stacks(samples, stops, params, 50.0)
    assert stacks.X.reshape(3, -1).sum(axis=1).tolist() == [2, 1, 1]
    stacks.save(tmp_path / "s.npz")
    first = (tmp_path / "s.npz").read_bytes()
    stacks.save(tmp_path / "s.npz")
    assert (tmp_path / "s.npz").read_bytes() == first  # byte-identical: stable DVC hashes
    back = Stacks.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.X, stacks.X)
    assert back.label.tolist() == ["AF", "JF", "AM"] and back.y.tolist() == [2, 3, 0]
    assert back.cage.tolist() == ["c1", "c1", "c2"] and back.sample.tolist() == ["r1:1", "r1:2", "r2:1"]
    assert back.interval_s == 10 and back.start_hour.tolist() == [10.0, 10.0, 21.5] and back.seconds_per_hour == 3600
