"""Stacks of stop histograms: T time intervals x an N x N grid over the cage.

A stop belongs to the interval of its start and the tile of its mean position;
positions outside the arena are clipped to the border tile, stops starting outside
the window are left out (and counted). Array layout: ``[t, row, col]`` with
row = y (top of the image first) and col = x, as the camera sees the cage.

Where the window (``n_intervals`` x ``interval_s``) lies, :func:`stack_window`:

- ``align: clock`` (``params.yaml``'s choice): interval 0 starts at the first ``clock_start``
  o'clock of the room's clock at or after the recording's first frame (its
  FRAME.TIMESTAMP in ``room.timezone``; the simulator's clock for simulated files), so
  channel t is the same time of day in every recording, and the light phases drawn
  behind the time plots are exact. LMT recordings start whenever the mice were put in,
  so counting from the first frame would give the same channel a different circadian
  phase in each; the price is the stops before ``clock_start`` (left out, counted) and
  a recording that must run that much longer than the window;
- ``align: recording`` (the paper's): interval 0 starts at the first frame.

A recording shorter than its window by at most ``pad_tolerance`` of one interval is
padded, with a warning, by ``histograms`` and ``predict`` alike (one rule,
:func:`check_length`); one short by more is padded with a warning naming how many
intervals stay empty by ``histograms`` (it keeps its cage in the cohort) and refused by
``predict`` (one mouse's classification would rest on the padding). One that ends
before its window starts is an error in both: its stack would be empty. Stops after the
window are left out; "truncated" is logged only when some were.

A mouse-recording of the manifest with no stop at all (no valid detection, e.g. only
anonymous ones, or a mouse that never held still) is an error naming its manifest
row: its stack would be empty, a sample with nothing to learn or predict from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.config import HistogramParams, LMTGeometry, TargetParams
from lmt_stereotype.errors import InputError
from lmt_stereotype.files import read_table, save_npz
from lmt_stereotype.labels import GROUPING_COLUMNS, Target, label_factors, sample_labels
from lmt_stereotype.manifest import read_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """Where a recording's stack lies: interval 0 starts ``offset_s`` after its first frame, at
    clock hour ``start_hour`` (NaN when unknown: a recording without a clock, aligned on itself)."""

    offset_s: float
    start_hour: float

    def words(self, params: HistogramParams) -> str:
        window_s = params.n_intervals * params.interval_s
        if params.align == "recording":
            return f"{params.n_intervals} x {params.interval_s:g} s = {window_s:g} s from its first frame"
        return (
            f"{params.n_intervals} x {params.interval_s:g} s = {window_s:g} s from {_hhmm(self.start_hour)} on the"
            f" clock, {self.offset_s:.3f} s after its first frame"
        )


def _hhmm(hour: float) -> str:
    minutes = round(hour * 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def stack_window(start_hour: float, seconds_per_hour: float, params: HistogramParams, recording: str) -> Window:
    """The window of a recording whose first frame is at clock hour ``start_hour`` (a clock hour
    lasting ``seconds_per_hour`` seconds of recording: 3600, the simulator's fewer)."""
    if params.align == "recording":
        return Window(0.0, start_hour)
    if not np.isfinite(start_hour):
        raise InputError(
            recording,
            "its first frame has no clock time (FRAME.TIMESTAMP), so its stack cannot start at"
            f" histograms.clock_start ({_hhmm(params.clock_start)}); set histograms.align: recording",
        )
    offset_h = (params.clock_start - start_hour) % 24
    if offset_h > 24 - 1e-6:  # at clock_start to the microsecond
        offset_h = 0.0
    return Window(offset_h * seconds_per_hour, params.clock_start)


def check_length(
    recording: str, duration_s: float, fps: float, window: Window, params: HistogramParams, *, refuse: bool
) -> None:
    """The one rule for recordings shorter than their window: short by at most ``pad_tolerance`` of an
    interval, padded with a warning; more, refused (``refuse``: ``predict``) or padded with a warning;
    ending before the window starts, refused."""
    need_s = window.offset_s + params.n_intervals * params.interval_s
    short_s = need_s - duration_s
    if short_s <= 0:
        return
    what = (
        f"lasts {duration_s:.3f} s ({round(duration_s * fps)} frames), {short_s:.3f} s ({round(short_s * fps)}"
        f" frames) short of its window of {window.words(params)}"
    )
    tolerance = f"histograms.pad_tolerance: {params.pad_tolerance:g} of one {params.interval_s:g}-s interval"
    if duration_s <= window.offset_s:
        raise InputError(recording, f"{what}: it ends before its window starts, so its stacks would be empty")
    if short_s <= params.pad_tolerance * params.interval_s:
        log.warning("%s %s: padded (within %s)", recording, what, tolerance)
    elif refuse:
        raise InputError(recording, f"{what}: more than {tolerance}")
    else:
        log.warning(
            "%s %s: padded, its last %.3g of %d intervals are empty",
            recording,
            what,
            short_s / params.interval_s,
            params.n_intervals,
        )


def stop_histograms(
    start_s: np.ndarray,
    x_cm: np.ndarray,
    y_cm: np.ndarray,
    params: HistogramParams,
    arena_size_cm: float,
    offset_s: float = 0.0,
) -> np.ndarray:
    """Count stops per (interval, row, col): a float32 array of shape (T, N, N); interval 0 starts
    ``offset_s`` after the first frame (:attr:`Window.offset_s`)."""
    T, N = params.n_intervals, params.grid
    t = np.floor((np.asarray(start_s, dtype=np.float64) - offset_s) / params.interval_s).astype(np.int64)
    inside = (t >= 0) & (t < T)
    cell = arena_size_cm / N
    col = np.clip(np.floor(np.asarray(x_cm) / cell), 0, N - 1).astype(np.int64)
    row = np.clip(np.floor(np.asarray(y_cm) / cell), 0, N - 1).astype(np.int64)
    flat = (t * N + row) * N + col
    counts = np.bincount(flat[inside], minlength=T * N * N)
    return counts.reshape(T, N, N).astype(np.float32)


@dataclass
class Stacks:
    """All mouse-recordings of a cohort: stacks ``X`` (n, T, N, N) with their target labels and groups."""

    X: np.ndarray
    label: np.ndarray  # each recording's class of the target: "AM" ... for class, "KO" for genotype
    classes: tuple[str, ...]  # the target's classes in output order
    target_column: str  # the sample table's column the labels come from ("class": sex + age)
    groups: dict[str, np.ndarray]  # grouping column (sex, age, genotype ...) -> each recording's level ("": unknown)
    cage: np.ndarray
    recording: np.ndarray
    animal_id: np.ndarray
    sample: np.ndarray
    identity: np.ndarray  # each sample's recording's identity (LMTDatabase.identity): what a model was trained on
    interval_s: float
    start_hour: np.ndarray  # clock hour at which each recording's interval 0 starts (room time, :class:`Window`)
    seconds_per_hour: float  # seconds of recording per hour of the room's clock (3600; the simulator's fewer)

    @property
    def target(self) -> Target:
        return Target(self.target_column, self.classes)

    @property
    def y(self) -> np.ndarray:
        """Class indices in the order of :attr:`classes`."""
        return self.target.indices(self.label)

    def subset(self, index: np.ndarray) -> Stacks:
        """The recordings at ``index``."""
        return replace(
            self,
            X=self.X[index],
            label=self.label[index],
            groups={c: v[index] for c, v in self.groups.items()},
            cage=self.cage[index],
            recording=self.recording[index],
            animal_id=self.animal_id[index],
            sample=self.sample[index],
            identity=self.identity[index],
            start_hour=self.start_hour[index],
        )

    def save(self, path: Path | str) -> None:
        save_npz(
            path,
            X=self.X,
            label=self.label.astype(str),
            classes=np.array(self.classes),
            target=np.array(self.target_column),
            **{f"group:{c}": v.astype(str) for c, v in self.groups.items()},
            cage=self.cage.astype(str),
            recording=self.recording.astype(str),
            animal_id=self.animal_id.astype(np.int64),
            sample=self.sample.astype(str),
            identity=self.identity.astype(str),
            interval_s=np.float64(self.interval_s),
            start_hour=np.asarray(self.start_hour, dtype=np.float64),
            seconds_per_hour=np.float64(self.seconds_per_hour),
        )

    @classmethod
    def load(cls, path: Path | str) -> Stacks:
        if not Path(path).exists():
            raise InputError(path, "no histogram stacks; run `lmt-stereotype histograms` first")
        with np.load(path, allow_pickle=False) as z:
            if "identity" not in z.files:
                raise InputError(path, "made by an older lmt-stereotype (no recording identity): run preprocess again")
            return cls(
                X=z["X"],
                label=z["label"],
                classes=tuple(str(c) for c in z["classes"]),
                target_column=str(z["target"]),
                groups={k.removeprefix("group:"): z[k] for k in z.files if k.startswith("group:")},
                cage=z["cage"],
                recording=z["recording"],
                animal_id=z["animal_id"],
                sample=z["sample"],
                identity=z["identity"],
                interval_s=float(z["interval_s"]),
                start_hour=z["start_hour"],
                seconds_per_hour=float(z["seconds_per_hour"]),
            )


def build_stacks(
    samples: pd.DataFrame,
    stops_by_recording: dict[str, pd.DataFrame],
    windows: dict[str, Window],
    params: HistogramParams,
    arena_size_cm: float,
    target: Target,
) -> Stacks:
    """One stack per row of a sample table (:func:`lmt_stereotype.manifest.sample_table`), labelled for
    ``target``, in its recording's window.

    The grouping columns with two levels or more in the cohort go along, for accuracy within their levels.
    """
    X = np.zeros((len(samples), params.n_intervals, params.grid, params.grid), dtype=np.float32)
    for k, row in enumerate(samples.itertuples(index=False)):
        stops = stops_by_recording[row.recording_id]
        mine = stops[stops["animal_id"] == row.animal_id]
        X[k] = stop_histograms(
            mine["start_s"].to_numpy(),
            mine["x_cm"].to_numpy(),
            mine["y_cm"].to_numpy(),
            params,
            arena_size_cm,
            windows[row.recording_id].offset_s,
        )
    groups = {c: samples[c].to_numpy(dtype=str) for c in GROUPING_COLUMNS}
    return Stacks(
        X=X,
        label=sample_labels(samples, target.column),
        classes=target.classes,
        target_column=target.column,
        groups={c: levels for c, levels in groups.items() if len(set(levels) - {""}) >= 2},
        cage=samples["cage"].to_numpy(dtype=str),
        recording=samples["recording_id"].to_numpy(dtype=str),
        animal_id=samples["animal_id"].to_numpy(dtype=np.int64),
        sample=samples["sample"].to_numpy(dtype=str),
        identity=samples["identity"].to_numpy(dtype=str),
        interval_s=params.interval_s,
        start_hour=np.array([windows[r].start_hour for r in samples["recording_id"]], dtype=np.float64),
        seconds_per_hour=float(samples["seconds_per_hour"].iloc[0]),
    )


def labelled_samples(samples: pd.DataFrame, params: TargetParams, manifest: Path) -> tuple[pd.DataFrame, Target, int]:
    """The samples with a label for the target, the target, and how many were left out for lacking one.

    A sample whose label (or, for ``class``, sex or age) neither the manifest nor ANIMAL
    gives is an error naming its manifest row, unless ``drop_missing``; so is a label
    outside ``target.classes``. (A cohort of one class is refused where models are trained.)
    """
    factors = label_factors(params.column)
    absent = [f for f in factors if f not in samples.columns]
    if absent:
        known = [c for c in samples.columns if c not in ("sample", "recording_id", "manifest_row", "animal_id")]
        raise InputError(
            manifest, f"target.column {params.column!r}: no column {absent[0]!r} (it has {', '.join(known)})"
        )
    missing = np.zeros(len(samples), dtype=bool)
    for factor in factors:
        empty = (samples[factor] == "").to_numpy()
        if empty.any() and not params.drop_missing:
            row = samples[empty].iloc[0]
            raise InputError(
                manifest,
                f"row {row.manifest_row}: no {factor} for animal {row.animal} of {row.recording} (not in the manifest "
                "nor ANIMAL); fill it, or set target.drop_missing: true to leave such recordings out",
            )
        missing |= empty
    if missing.any():
        log.warning(
            "%d mouse-recordings have no %s and are left out (target.drop_missing)", missing.sum(), params.column
        )
    kept = samples[~missing].reset_index(drop=True)
    labels = sample_labels(kept, params.column)
    try:
        target = Target.of(params.column, labels, params.classes)
    except ValueError as exc:
        raise InputError(manifest, str(exc)) from None
    return kept, target, int(missing.sum())


def build_cohort_stacks(
    samples_path: Path,
    stops_dir: Path,
    out_path: Path,
    geometry: LMTGeometry,
    params: HistogramParams,
    target_params: TargetParams,
    manifest: Path,
) -> dict[str, float]:
    """Stacks for every mouse-recording of the sample table (written by ``stops``), labelled for the
    target and saved to ``out_path``.

    Reads only what ``stops`` wrote, never the raw recordings. Each recording's window is
    placed by :func:`stack_window`; one shorter than its window is padded (warned,
    :func:`check_length`); stops outside the window are left out (logged and counted); a
    mouse-recording without a single stop is an error naming its row of ``manifest``, and
    so is one without a label (:func:`labelled_samples`). Returns counts.
    """
    samples, target, n_unlabelled = labelled_samples(read_samples(samples_path), target_params, manifest)
    summary = read_table(stops_dir / "recordings.csv").set_index("recording_id")
    window_s = params.n_intervals * params.interval_s
    stops, windows, before, after = {}, {}, 0, 0
    for rid, rec in samples.drop_duplicates("recording_id").set_index("recording_id").iterrows():
        if rid not in summary.index:
            raise InputError(stops_dir, f"no stops for recording {rid}: run the stops stage first")
        stops[rid] = table = read_table(stops_dir / f"{rid}.parquet")
        windows[rid] = window = stack_window(rec["start_hour"], rec["seconds_per_hour"], params, rec["recording"])
        check_length(rec["recording"], summary.at[rid, "duration_s"], geometry.fps, window, params, refuse=False)
        mine = table[table["animal_id"].isin(samples.loc[samples["recording_id"] == rid, "animal_id"])]
        n_before = int((mine["start_s"] < window.offset_s).sum())
        n_after = int((mine["start_s"] >= window.offset_s + window_s).sum())
        before, after = before + n_before, after + n_after
        if n_before or n_after:
            log.info(
                "%s: truncated to its window of %s: %d stops before it and %d after it left out",
                rec["recording"],
                window.words(params),
                n_before,
                n_after,
            )
    for row in samples.itertuples(index=False):
        if not (stops[row.recording_id]["animal_id"] == row.animal_id).any():
            raise InputError(
                manifest,
                f"row {row.manifest_row}: animal {row.animal} of {row.recording} has no stop at all (no valid "
                "detection, or it never held still): its stack would be empty; check its tracking or remove the row",
            )
    stacks = build_stacks(samples, stops, windows, params, geometry.arena_size_cm, target)
    stacks.save(out_path)
    n_stops = sum(int(stops[r]["animal_id"].isin(g["animal_id"]).sum()) for r, g in samples.groupby("recording_id"))
    return {
        "n_samples": len(samples),
        "n_cages": samples["cage"].nunique(),
        "n_recordings": len(stops),
        "n_stops": n_stops,
        "n_stops_in_window": int(stacks.X.sum()),
        "n_stops_before_window": before,
        "n_stops_after_window": after,
        "n_without_target": n_unlabelled,
        **{f"n_{c}": int((stacks.label == c).sum()) for c in target.classes},
    }
