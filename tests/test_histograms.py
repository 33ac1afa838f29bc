"""A stack counts stops per (interval of its start, tile of its mean position)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.params import DEMO, varied

from lmt_stereotype.errors import InputError
from lmt_stereotype.histograms import (
    Stacks,
    Window,
    build_stacks,
    check_length,
    labelled_samples,
    stack_window,
    stop_histograms,
)
from lmt_stereotype.labels import GROUPING_COLUMNS, PAPER_CLASSES, Target

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


def samples(**labels: list[str]) -> pd.DataFrame:
    """A sample table of three mouse-recordings (as ``stops`` writes it), with these label columns."""
    table = pd.DataFrame(
        {
            "sample": ["r1:1", "r1:2", "r2:1"],
            "recording": ["r1.sqlite", "r1.sqlite", "r2.sqlite"],
            "recording_id": ["r1", "r1", "r2"],
            "manifest_row": [2, 3, 4],
            "animal": ["1", "2", "1"],
            "animal_id": [1, 2, 1],
            "cage": ["c1", "c1", "c2"],
            **{column: [""] * 3 for column in GROUPING_COLUMNS},
            "identity": ["0123456789abcdef", "0123456789abcdef", "fedcba9876543210"],
            "start_hour": [10.0, 10.0, 21.5],
            "seconds_per_hour": [3600.0] * 3,
        }
    )
    for column, values in labels.items():
        table[column] = values
    return table


STOPS = {
    "r1": pd.DataFrame(
        {"animal_id": [1, 1, 2], "start_s": [0.0, 5.0, 1.0], "x_cm": [1.0, 2.0, 3.0], "y_cm": [1.0] * 3}
    ),
    "r2": pd.DataFrame({"animal_id": [1], "start_s": [2.0], "x_cm": [40.0], "y_cm": [40.0]}),
}
SMALL = varied(DEMO.histograms, n_intervals=2, interval_s=10, grid=10)
LABELS = {"sex": ["F", "F", "M"], "age": ["adult", "juvenile", "adult"], "genotype": ["WT", "KO", "KO"]}
CLASS = Target.of("class", PAPER_CLASSES)
WINDOWS = {"r1": Window(0.0, 10.0), "r2": Window(0.0, 21.5)}  # each from its first frame


def test_stacks_round_trip_through_one_file_with_labels_cages_and_ids(tmp_path):
    stacks = build_stacks(samples(**LABELS, strain=["B6"] * 3), STOPS, WINDOWS, SMALL, 50.0, CLASS)
    assert stacks.X.reshape(3, -1).sum(axis=1).tolist() == [2, 1, 1]
    stacks.save(tmp_path / "s.npz")
    first = (tmp_path / "s.npz").read_bytes()
    stacks.save(tmp_path / "s.npz")
    assert (tmp_path / "s.npz").read_bytes() == first  # byte-identical: stable DVC hashes
    back = Stacks.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.X, stacks.X)
    assert back.label.tolist() == ["AF", "JF", "AM"] and back.y.tolist() == [2, 3, 0]
    assert back.target == CLASS and back.classes == PAPER_CLASSES and back.target_column == "class"
    assert set(back.groups) == {"sex", "age", "genotype"}  # strain has one level, treatment none: no groups
    assert back.groups["genotype"].tolist() == ["WT", "KO", "KO"] and back.groups["sex"].tolist() == ["F", "F", "M"]
    assert back.cage.tolist() == ["c1", "c1", "c2"] and back.sample.tolist() == ["r1:1", "r1:2", "r2:1"]
    assert back.identity.tolist() == ["0123456789abcdef", "0123456789abcdef", "fedcba9876543210"]
    assert back.interval_s == 10 and back.start_hour.tolist() == [10.0, 10.0, 21.5] and back.seconds_per_hour == 3600


@pytest.mark.parametrize(
    "column, labels, classes, y",
    [("sex", ["F", "F", "M"], ("M", "F"), [1, 1, 0]), ("genotype", ["WT", "KO", "KO"], ("KO", "WT"), [1, 0, 0])],
)
def test_stacks_are_labelled_by_the_target_column_in_its_class_order(tmp_path, column, labels, classes, y):
    target = Target.of(column, labels)
    stacks = build_stacks(samples(**LABELS), STOPS, WINDOWS, SMALL, 50.0, target)
    assert stacks.label.tolist() == labels and stacks.classes == classes and stacks.y.tolist() == y
    stacks.save(tmp_path / "s.npz")
    back = Stacks.load(tmp_path / "s.npz")
    assert back.target == target and back.y.tolist() == y
    reordered = build_stacks(samples(**LABELS), STOPS, WINDOWS, SMALL, 50.0, Target.of(column, labels, classes[::-1]))
    assert reordered.y.tolist() == [1 - k for k in y]  # target.classes decides the indices


def test_a_subset_of_stacks_keeps_every_per_recording_field_aligned():
    stacks = build_stacks(samples(**LABELS), STOPS, WINDOWS, SMALL, 50.0, CLASS)
    part = stacks.subset(np.array([2, 0]))
    assert part.label.tolist() == ["AM", "AF"] and part.sample.tolist() == ["r2:1", "r1:1"]
    assert part.groups["genotype"].tolist() == ["KO", "WT"] and part.cage.tolist() == ["c2", "c1"]
    np.testing.assert_array_equal(part.X, stacks.X[[2, 0]])
    assert part.target == stacks.target and part.start_hour.tolist() == [21.5, 10.0]


def test_labelled_samples_apply_the_target_and_name_a_missing_label_with_its_row(tmp_path):
    manifest = tmp_path / "manifest.csv"
    table = samples(**{**LABELS, "genotype": ["WT", "", "KO"]})
    kept, target, dropped = labelled_samples(table, varied(DEMO.target, column="class"), manifest)
    assert (len(kept), target, dropped) == (3, CLASS, 0)
    genotype = varied(DEMO.target, column="genotype")
    with pytest.raises(InputError, match="row 3: no genotype for animal 2 of r1.sqlite .*drop_missing"):
        labelled_samples(table, genotype, manifest)
    kept, target, dropped = labelled_samples(table, varied(genotype, drop_missing=True), manifest)
    assert kept["sample"].tolist() == ["r1:1", "r2:1"] and dropped == 1 and target.classes == ("KO", "WT")
    assert all(type(c) is str for c in target.classes)  # plain text, as YAML (MLmodel metadata) and JSON take it


@pytest.mark.parametrize(
    "target, message",
    [
        ({"column": "rank"}, "target.column 'rank': no column 'rank'"),
        ({"column": "genotype", "classes": ("WT", "HET")}, "genotype 'KO' not among target.classes"),
    ],
)
def test_labelled_samples_refuse_a_target_the_cohort_cannot_answer(tmp_path, target, message):
    table = samples(**LABELS, treatment=["drug", "", ""])
    with pytest.raises(InputError, match=message):
        labelled_samples(table, varied(DEMO.target, **target), tmp_path / "manifest.csv")


def test_a_cohort_of_one_class_is_stacked_but_refused_where_models_are_trained(tmp_path):
    """``histograms`` builds it (a cohort to predict needs no second class); ``train``/``baselines`` refuse it."""
    from helpers.cohort import tiny_stacks

    from lmt_stereotype.stages._cross_validation import check_design

    table = samples(**LABELS, treatment=["drug", "", ""])
    kept, target, _ = labelled_samples(table, varied(DEMO.target, column="treatment", drop_missing=True), tmp_path)
    assert target.classes == ("drug",) and len(kept) == 1
    stacks = tiny_stacks(column="sex")
    one_sex = stacks.subset(np.flatnonzero(stacks.label == "M"))
    params = DEMO.model_copy(update={"target": varied(DEMO.target, column="sex")})
    with pytest.raises(InputError, match="every recording has sex 'M': two classes or more are needed"):
        check_design(params, one_sex, tmp_path / "params.yaml")


# --- where the window lies: the room's clock, or the recording's first frame -------------------

CLOCK = varied(DEMO.histograms, n_intervals=72, interval_s=3600, grid=30, align="clock", clock_start=12)


@pytest.mark.parametrize("start_hour", [9 + 20 / 60, 10.75, 11.999])
def test_on_the_clock_interval_t_covers_the_same_clock_hour_in_every_recording(start_hour):
    """Interval 0 starts at the first 12:00 after the first frame: a stop at 12:30 is in interval 0, one at
    14:10 in interval 2, whenever the recording started; stops before 12:00 are left out."""
    window = stack_window(start_hour, 3600.0, CLOCK, "r.sqlite")
    assert window.start_hour == 12 and window.offset_s == pytest.approx((12 - start_hour) * 3600)
    since_start = (np.array([11.9, 12.5, 14 + 10 / 60]) - start_hour) * 3600  # stops at these clock hours
    stack = stop_histograms(since_start, np.full(3, 10.0), np.full(3, 10.0), CLOCK, 50.0, window.offset_s)
    assert stack.sum(axis=(1, 2))[:3].tolist() == [1, 0, 1] and stack.sum() == 2


def test_a_recording_started_on_the_hour_loses_nothing_and_one_started_after_it_waits_a_day():
    assert stack_window(12.0, 3600.0, CLOCK, "r.sqlite").offset_s == 0
    assert stack_window(12.5, 3600.0, CLOCK, "r.sqlite").offset_s == pytest.approx(23.5 * 3600)
    assert stack_window(11.0, 30.0, CLOCK, "r.sqlite").offset_s == pytest.approx(30.0), "the simulator's 30-s hours"


def test_aligned_on_the_recording_interval_0_is_its_first_frame():
    window = stack_window(9.5, 3600.0, varied(CLOCK, align="recording"), "r.sqlite")
    assert (window.offset_s, window.start_hour) == (0.0, 9.5)
    with pytest.raises(InputError, match="r.sqlite: its first frame has no clock time .*align: recording"):
        stack_window(float("nan"), 3600.0, CLOCK, "r.sqlite")


def test_one_tolerance_for_short_recordings_in_histograms_and_predict(caplog):
    """Short by 2 frames: padded with a warning by both; short by more than pad_tolerance of an interval:
    padded by histograms, refused by predict; the message shows the duration to the frame."""
    window = Window(0.0, 10.0)
    full = 72 * 3600.0
    for refuse in (False, True):
        check_length("r.sqlite", full - 2 / 30, 30, window, CLOCK, refuse=refuse)
    assert len(caplog.records) == 2 and all("0.067 s (2 frames) short" in r.message for r in caplog.records)
    assert all("padded (within histograms.pad_tolerance: 0.1" in r.message for r in caplog.records)
    caplog.clear()
    check_length("r.sqlite", full - 1800, 30, window, CLOCK, refuse=False)
    assert "padded, its last 0.5 of 72 intervals are empty" in caplog.records[0].message
    with pytest.raises(InputError, match=r"lasts 257400.000 s \(7722000 frames\), 1800.000 s .* more than"):
        check_length("r.sqlite", full - 1800, 30, window, CLOCK, refuse=True)
    caplog.clear()
    check_length("r.sqlite", full + 1, 30, window, CLOCK, refuse=True)
    assert not caplog.records, "longer is not short"


def test_a_recording_that_ends_before_its_window_starts_is_refused_by_both():
    window = stack_window(12.5, 3600.0, CLOCK, "r.sqlite")  # started after 12:00: its window starts tomorrow
    for refuse in (False, True):
        with pytest.raises(InputError, match="r.sqlite: lasts 3600.000 s .* ends before its window starts"):
            check_length("r.sqlite", 3600.0, 30, window, CLOCK, refuse=refuse)
