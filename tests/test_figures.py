"""One mouse's Figure 1: its stops over time, its stop spots on the cage, its histogram map; the class maps
with one panel per class of the target."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers.params import DEMO, varied
from matplotlib.collections import PathCollection
from matplotlib.patches import Circle, Rectangle

from lmt_stereotype.figures import (
    channel_grid_figure,
    class_maps_figure,
    draw_cage,
    mouse_axes,
    mouse_figure,
    time_importance_figure,
)
from lmt_stereotype.histograms import stop_histograms
from lmt_stereotype.labels import PAPER_CLASSES
from lmt_stereotype.stops import STOP_COLUMNS

ARENA = 50.0
LAYOUT = DEMO.cage_layout
PARAMS = varied(DEMO.histograms, n_intervals=12, interval_s=180, grid=30)


def synthetic_stops(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.sort(rng.uniform(0, 13 * 180, n))  # some after the 12 x 3 min window
    fps = 30
    duration = 1 + rng.exponential(5, n)
    return pd.DataFrame(
        {
            "animal_id": 1,
            "rfid": "000004100103",
            "start_frame": np.round(start * fps).astype(int),
            "end_frame": np.round((start + duration) * fps).astype(int),
            "start_s": start,
            "duration_s": duration,
            "x_cm": rng.uniform(0, ARENA, n),
            "y_cm": rng.uniform(0, ARENA, n),
            "n_detections": np.round(duration * fps).astype(int),
        }
    )[STOP_COLUMNS]


def stack_of(stops: pd.DataFrame) -> np.ndarray:
    return stop_histograms(stops["start_s"], stops["x_cm"], stops["y_cm"], PARAMS, ARENA)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_draw_cage_puts_house_feeders_and_water_at_the_layouts_coordinates(ax):
    draw_cage(ax, LAYOUT, ARENA)
    by_name: dict[str, list] = {}
    for patch in ax.patches:
        by_name.setdefault(patch.get_gid(), []).append(patch)
    (arena,) = by_name["arena"]
    assert isinstance(arena, Rectangle) and arena.get_xy() == (0, 0) and arena.get_width() == ARENA
    (house,) = by_name["house"]
    h = LAYOUT.house
    assert isinstance(house, Rectangle)
    assert (house.get_x(), house.get_y(), house.get_width(), house.get_height()) == (h.x, h.y, h.width, h.height)
    spots = [(c.center, c.radius) for c in by_name["feeder"]]
    assert all(isinstance(c, Circle) for c in by_name["feeder"] + by_name["water"])
    assert spots == [((f.x, f.y), f.r) for f in LAYOUT.feeders]
    assert [(c.center, c.radius) for c in by_name["water"]] == [((LAYOUT.water.x, LAYOUT.water.y), LAYOUT.water.r)]
    assert not any(p.get_fill() for p in ax.patches)  # outlines only: the data beneath stays visible
    assert sorted(t.get_text() for t in ax.texts) == ["feeder", "feeder", "house", "water"]


def test_draw_cage_points_y_down_with_the_top_edge_at_zero(ax):
    draw_cage(ax, LAYOUT, ARENA)
    assert ax.get_xlim() == (0, ARENA)
    assert ax.get_ylim() == (ARENA, 0)  # bottom of the axes is y = arena, top is y = 0
    assert ax.yaxis_inverted()


def test_draw_cage_leaves_an_image_drawn_before_it_unchanged(ax):
    counts = np.arange(9.0).reshape(3, 3)
    image = ax.imshow(counts, extent=(0, ARENA, ARENA, 0), vmin=0, vmax=10)
    draw_cage(ax, LAYOUT, ARENA)
    np.testing.assert_array_equal(image.get_array(), counts)
    assert image.get_clim() == (0, 10)
    assert image.get_extent() == [0, ARENA, ARENA, 0]


def test_mouse_figure_writes_a_png(tmp_path):
    stops = synthetic_stops()
    open_before = plt.get_fignums()
    path = mouse_figure(
        stops,
        stack_of(stops),
        layout=LAYOUT,
        arena_size_cm=ARENA,
        interval_s=PARAMS.interval_s,
        title="cage01, mouse 1",
        path=tmp_path / "f.png",
    )
    assert path == tmp_path / "f.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and 20_000 < len(data) < 5_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no temporary file left beside it
    assert plt.get_fignums() == open_before  # the figure is closed


def test_histogram_panel_is_the_stack_summed_over_time_on_the_cage():
    stops = synthetic_stops()
    stack = stack_of(stops)
    fig = plt.figure()
    _, spots, histogram = mouse_axes(
        fig, stops, stack, layout=LAYOUT, arena_size_cm=ARENA, interval_s=PARAMS.interval_s, title="t"
    )
    (image,) = histogram.images
    np.testing.assert_array_equal(image.get_array(), stack.sum(axis=0))
    assert image.get_extent() == [0, ARENA, ARENA, 0]  # row 0 (y = 0) at the top, like the stack
    assert {p.get_gid() for p in histogram.patches} == {"arena", "house", "feeder", "water"}
    assert histogram.yaxis_inverted() and spots.yaxis_inverted()
    (scatter,) = [c for c in spots.collections if isinstance(c, PathCollection)]
    assert len(scatter.get_offsets()) == stack.sum()  # the spots are the stops the map counts
    plt.close(fig)


@pytest.mark.parametrize(("interval_s", "unit"), [(180, "min"), (3600, "h")])
def test_time_is_in_hours_for_recordings_of_3_h_or_more(interval_s, unit):
    stops = synthetic_stops()
    params = PARAMS.model_copy(update={"interval_s": interval_s})
    stack = stop_histograms(stops["start_s"], stops["x_cm"], stops["y_cm"], params, ARENA)
    fig = plt.figure()
    over_time, _, _ = mouse_axes(
        fig, stops, stack, layout=LAYOUT, arena_size_cm=ARENA, interval_s=interval_s, title="t"
    )
    assert over_time.get_xlabel() == f"time ({unit})"
    plt.close(fig)


# --- class maps: one panel per class of the target ----------------------------------------


@pytest.fixture
def kept(monkeypatch):
    """The figures saved meanwhile, as path -> figure (still open; closed at the end)."""
    import lmt_stereotype.figures as figures

    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: seen.setdefault(Path(path).name, fig))
    yield seen
    for fig in seen.values():
        plt.close(fig)


@pytest.mark.parametrize(
    ("classes", "places"),
    [
        (PAPER_CLASSES, [(0, 0), (0, 1), (1, 0), (1, 1)]),  # the paper's Figure 3: AM, JM / AF, JF
        (("WT", "KO"), [(0, 0), (0, 1)]),  # one row
        (("A", "B", "C"), [(0, 0), (0, 1), (0, 2)]),
        (("r1", "r2", "r3", "r4", "r5"), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]),  # rows of three
    ],
)
def test_class_maps_draw_one_panel_per_class_in_the_target_s_order(kept, classes, places):
    maps = np.random.default_rng(0).normal(size=(len(classes), 6, 6))
    maps[-1] = np.nan  # a class without recordings keeps its panel
    spots = [[(10.0, 10.0)]] + [[]] * (len(classes) - 1)
    class_maps_figure(
        maps,
        (0, ARENA, ARENA, 0),
        classes=classes,
        layout=LAYOUT,
        arena_size_cm=ARENA,
        title="t",
        caption="c",
        label="l",
        spots=spots,
        path="maps.png",
    )
    fig = kept["maps.png"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(classes)
    assert [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in panels] == places
    assert [len(ax.images) for ax in panels] == [1] * (len(classes) - 1) + [0]
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes if ax not in panels) == 1  # the colour bar only


def test_channel_grid_and_time_importance_follow_the_classes(kept):
    classes = ("WT", "KO")
    channel_grid_figure(np.ones((2, 3, 4, 4)), (0, ARENA, ARENA, 0), ARENA, "t", "grid.png", classes=classes)
    grid = kept["grid.png"]
    assert [ax.get_title() for ax in grid.axes if ax.get_title()] == list(classes)
    assert sum(1 for ax in grid.axes if ax.images) == 2 * 3  # a column per class, a row per channel
    hours = np.arange(4) * 6.0
    time_importance_figure(np.ones((2, 4)), classes=classes, hours=hours, dark=[], title="t", path="time.png")
    (ax,) = kept["time.png"].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(classes)
