"""Figures users look at: the confusion matrix in the paper's Table 1 layout, loss curves,
one mouse's stops and histogram map (the paper's Figure 1)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as pe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Circle as CirclePatch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from lmt_stereotype.config import CageLayout
from lmt_stereotype.files import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=150, bbox_inches="tight")
    plt.close(fig)


def _draw_confusion(ax: plt.Axes, counts: np.ndarray, classes: Sequence[str]) -> None:
    """Counts with rows = labels and columns = predictions in the order of ``classes`` (AM, JM, AF, JF: Table 1).

    Cells are shaded by the share of their row, so classes and cohorts of different sizes read alike.
    """
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(counts.shape):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("Prediction")
    ax.set_ylabel("Labels")


def confusion_figure(
    counts: np.ndarray,
    classes: Sequence[str],
    title: str,
    metrics: dict[str, float],
    path: Path | str,
    warning: str | None = None,
) -> None:
    """One model's confusion matrix (Table 1's layout) with its accuracy, interval, chance and p-value,
    and, in red, the ``warning`` that accuracy is below chance (a biased scheme)."""
    fig, ax = plt.subplots(figsize=(max(4.6, 0.7 * len(classes) + 1.8), max(4.4, 0.7 * len(classes) + 1.6)))
    _draw_confusion(ax, np.asarray(counts), classes)
    ax.set_title(title, fontsize=10, pad=28)
    p = metrics["permutation_p_value"]
    caption = (
        f"accuracy {metrics['accuracy']:.1%}, interval over cages {metrics['accuracy_ci_low']:.1%}"
        f"–{metrics['accuracy_ci_high']:.1%}\nchance {metrics['chance_level']:.0%}, "
        + (f"permutation p = {p:.3g}" if np.isfinite(p) else "no permutation test")
        + (
            f"; females {metrics['accuracy_female']:.1%}, males {metrics['accuracy_male']:.1%}"
            if "accuracy_female" in metrics and "accuracy_male" in metrics
            else ""
        )
        + (
            f"\nROC AUC {metrics['roc_auc']:.2f} per fold [{metrics['roc_auc_ci_low']:.2f}, "
            f"{metrics['roc_auc_ci_high']:.2f}]"
            if np.isfinite(metrics.get("roc_auc", np.nan))
            else ""
        )
    )
    if warning:
        ax.text(
            0.5, -0.2, textwrap.fill(warning, 60), transform=ax.transAxes, ha="center", va="top", fontsize=8, color="C3"
        )
    ax.text(0.5, -0.08, caption, transform=ax.transAxes, ha="center", va="top", fontsize=8)
    _save(fig, path)


def confusion_panels_figure(panels: dict[str, np.ndarray], classes: Sequence[str], path: Path | str) -> None:
    """Several confusion matrices side by side (the paper's Table 1 and ours), each with its accuracy."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.6), squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels.items()):
        counts = np.asarray(counts)
        _draw_confusion(ax, counts, classes)
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(f"{title}\naccuracy {accuracy:.1%} of {counts.sum()}", fontsize=10, pad=8, y=-0.22)
    fig.tight_layout()
    _save(fig, path)


def loss_figure(curves: pd.DataFrame, title: str, path: Path | str) -> None:
    """Training loss per epoch: a thin line per fold column and a thick one for the ``mean`` column.

    Tuned folds train for different numbers of epochs; the mean stops where the shortest
    does, rather than jumping as folds drop out.
    """
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for fold in curves.columns.drop(["epoch", "mean"]):
        ax.plot(curves["epoch"], curves[fold], color="0.75", lw=0.8)
    ax.plot(curves["epoch"], curves["mean"], color="C0", lw=2, label="mean over folds")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False)
    _save(fig, path)


_HALO = [pe.Stroke(linewidth=2.2, foreground="black"), pe.Normal()]
"""White lines and text with a black rim read over any colormap and over a white background."""


def draw_cage(ax: plt.Axes, layout: CageLayout, arena_size_cm: float) -> None:
    """Arena, house, feeders and water as unfilled outlines on ``ax``, in cm with y pointing down.

    Only adds patches and text and sets limits, so images drawn before (histograms, activation
    maps with ``extent=(0, arena, arena, 0)``) keep their content and colour scale. Labels sit
    beside their landmark, on the side of the arena's centre, so they hide no stop on it.
    """
    h, w = layout.house, layout.water
    outlines = [
        ("arena", Rectangle((0, 0), arena_size_cm, arena_size_cm), None),
        ("house", Rectangle((h.x, h.y), h.width, h.height), (h.x + h.width / 2, h.y + h.height / 2, h.height / 2)),
        *(("feeder", CirclePatch((f.x, f.y), f.r), (f.x, f.y, f.r)) for f in layout.feeders),
        ("water", CirclePatch((w.x, w.y), w.r), (w.x, w.y, w.r)),
    ]
    for name, patch, label_at in outlines:
        patch.set(fill=False, edgecolor="white", linewidth=1.2, path_effects=_HALO, zorder=3, gid=name)
        ax.add_patch(patch)
        if label_at is not None:
            x, y, half_height = label_at
            below = y < arena_size_cm / 2
            y += half_height + 0.5 if below else -half_height - 0.5
            ax.text(
                x,
                y,
                name,
                color="white",
                fontsize=6,
                ha="center",
                va="top" if below else "bottom",
                path_effects=_HALO,
                zorder=4,
                clip_on=True,
            )
    ax.set_xlim(0, arena_size_cm)
    ax.set_ylim(arena_size_cm, 0)
    ax.set_aspect("equal")


def _time_unit(window_s: float) -> tuple[str, float]:
    """Hours for recordings of 3 h or more (the paper's 3 days), minutes for short demo ones."""
    return ("h", 3600.0) if window_s >= 3 * 3600 else ("min", 60.0)


def mouse_axes(
    fig: plt.Figure,
    stops: pd.DataFrame,
    stack: np.ndarray,
    *,
    layout: CageLayout,
    arena_size_cm: float,
    interval_s: float,
    title: str,
) -> list[plt.Axes]:
    """Draw the paper's Figure 1 for one mouse into ``fig``: (a) where it stopped over time,
    (b) its stop spots on the cage, (c) its histogram map; returns the three axes.

    Only stops starting inside the stack's window are drawn, so (a) and (b) show the same
    stops that (c) counts.
    """
    n_intervals, n_tiles = stack.shape[0], stack.shape[1]
    window_s = n_intervals * interval_s
    unit, seconds = _time_unit(window_s)
    shown = stops[(stops["start_s"] >= 0) & (stops["start_s"] < window_s)]
    start = shown["start_s"].to_numpy() / seconds
    end = start + shown["duration_s"].to_numpy() / seconds
    ax_t, ax_s, ax_h = fig.subplots(1, 3, width_ratios=[1.35, 1, 1])

    for coord, colour in (("x_cm", "C0"), ("y_cm", "C2")):
        v = shown[coord].to_numpy()
        ax_t.hlines(v, start, end, color=colour, lw=1.5)
        ax_t.plot(start, v, "|", color=colour, ms=5, label=coord[0])
    ax_t.set(xlim=(0, window_s / seconds), ylim=(0, arena_size_cm), xlabel=f"time ({unit})", ylabel="position (cm)")
    ax_t.set_title(f"(a) {len(shown)} stops: position from start to end", fontsize=9, loc="left")
    ax_t.legend(
        frameon=False,
        fontsize=8,
        ncols=2,
        loc="lower right",
        bbox_to_anchor=(1, 0.98),
        markerscale=2,
        labelcolor="linecolor",
    )

    edges = np.linspace(0, arena_size_cm, n_tiles + 1)
    ax_s.vlines(edges, 0, arena_size_cm, color="0.88", lw=0.4, zorder=0)
    ax_s.hlines(edges, 0, arena_size_cm, color="0.88", lw=0.4, zorder=0)
    spots = ax_s.scatter(
        shown["x_cm"],
        shown["y_cm"],
        c=start,
        s=4 * np.sqrt(shown["duration_s"]),
        cmap="viridis",
        vmin=0,
        vmax=window_s / seconds,
        alpha=0.85,
        edgecolors="0.3",
        linewidths=0.3,
    )
    draw_cage(ax_s, layout, arena_size_cm)
    fig.colorbar(spots, ax=ax_s, shrink=0.8, label=f"start ({unit})")
    ax_s.set_title(f"(b) stop spots (size: duration) on the {n_tiles} x {n_tiles} grid", fontsize=9)

    total = stack.sum(axis=0)
    image = ax_h.imshow(
        total, cmap="magma", vmin=0, extent=(0, arena_size_cm, arena_size_cm, 0), interpolation="nearest"
    )
    draw_cage(ax_h, layout, arena_size_cm)
    fig.colorbar(image, ax=ax_h, shrink=0.8, label="stops per tile")
    ax_h.set_title(f"(c) histogram map, summed over {n_intervals} intervals", fontsize=9)
    for ax in (ax_s, ax_h):
        ax.set(xlabel="x (cm)", ylabel="y (cm)")
    fig.suptitle(title, fontsize=11)
    return [ax_t, ax_s, ax_h]


def mouse_figure(
    stops: pd.DataFrame,
    stack: np.ndarray,
    *,
    layout: CageLayout,
    arena_size_cm: float,
    interval_s: float,
    title: str,
    path: Path | str,
) -> Path:
    """One mouse's stops and histogram map (see :func:`mouse_axes`) saved as an image at ``path``."""
    fig = plt.figure(figsize=(15, 4.6), layout="constrained")
    mouse_axes(fig, stops, stack, layout=layout, arena_size_cm=arena_size_cm, interval_s=interval_s, title=title)
    _save(fig, path)
    return Path(path)


def class_panels(n_classes: int) -> tuple[int, int]:
    """Rows and columns of one panel per class: the paper's 2 x 2 for four classes, one row for two
    or three, rows of three for five or more."""
    if n_classes == 4:
        return 2, 2
    columns = min(n_classes, 3)
    return -(-n_classes // columns), columns


def class_maps_figure(
    maps: np.ndarray,
    extent: tuple[float, float, float, float],
    *,
    classes: Sequence[str],
    layout: CageLayout,
    arena_size_cm: float,
    title: str,
    caption: str,
    label: str,
    path: Path | str,
    spots: list[list[tuple[float, float]]] | None = None,
) -> None:
    """One map per class on the cage, one colour scale: for the paper's four classes its Figure 3's
    layout (AM top-left, JM top-right, AF bottom-left, JF bottom-right), else in the classes' order
    (:func:`class_panels`).

    ``spots`` (x, y in cm per class) are drawn as red crosses; the caption says how they were chosen.
    """
    finite = maps[np.isfinite(maps)]
    diverging = finite.size and finite.min() < 0
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    norm = dict(vmin=-bound, vmax=bound, cmap="RdBu_r") if diverging else dict(vmin=0, vmax=bound, cmap="magma")
    rows, columns = class_panels(len(classes))
    size = (8.2, 8.4) if (rows, columns) == (2, 2) else (4.1 * columns + 0.6, 4.0 * rows + 0.4)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, constrained_layout=True)
    for ax in axes.flat[len(classes) :]:
        ax.set_axis_off()
    for c, cls in enumerate(classes):
        ax = axes[divmod(c, columns)]
        if np.isfinite(maps[c]).any():
            image = ax.imshow(maps[c], extent=extent, interpolation="nearest", **norm)
        else:
            ax.text(arena_size_cm / 2, arena_size_cm / 2, "no recordings", ha="center", va="center", color="0.4")
        draw_cage(ax, layout, arena_size_cm)
        for x, y in (spots or [[]] * len(classes))[c]:
            ax.plot(x, y, marker="x", color="red", markersize=11, markeredgewidth=2.5)
        ax.set_title(cls, fontsize=12, fontweight="bold")
        ax.set_xlabel("x (cm)")
        ax.set_ylabel("y (cm)")
    if np.isfinite(maps).any():
        fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    fig.suptitle(title, fontsize=12)
    fig.text(0.01, -0.01, caption, fontsize=8, wrap=True, va="top", ha="left")
    _save(fig, path)


def channel_grid_figure(
    maps: np.ndarray,
    extent: tuple[float, float, float, float],
    arena_size_cm: float,
    title: str,
    path: Path | str,
    *,
    classes: Sequence[str],
) -> None:
    """Every channel (rows) of one branch for every class (columns), one colour scale: an overview."""
    n_channels = maps.shape[1]
    fig, axes = plt.subplots(
        n_channels,
        len(classes),
        figsize=(1.6 * len(classes) + 1, 1.5 * n_channels + 0.6),
        squeeze=False,
        constrained_layout=True,
    )
    finite = maps[np.isfinite(maps)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    for ch in range(n_channels):
        for c, cls in enumerate(classes):
            ax = axes[ch, c]
            image = ax.imshow(maps[c, ch], extent=extent, vmin=0, vmax=vmax, cmap="magma", interpolation="nearest")
            ax.set_xlim(0, arena_size_cm)
            ax.set_ylim(arena_size_cm, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if ch == 0:
                ax.set_title(cls, fontsize=10, fontweight="bold")
            if c == 0:
                ax.set_ylabel(f"ch {ch}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.3, label="mean activation")
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def clock_label(hour: float) -> str:
    """``"22:00"`` for 22.0 or 46.0, ``"04:30"`` for 28.5."""
    minutes = round(hour * 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def time_importance_figure(
    importance: np.ndarray,
    *,
    classes: Sequence[str],
    hours: np.ndarray,
    dark: list[tuple[float, float]],
    title: str,
    path: Path | str,
) -> None:
    """Attribution per interval and class (rows of ``importance``, in the order of ``classes``) on the room's
    clock (``hours``: each interval's start, counting on past 24), with the ``dark`` stretches shaded where
    they fell."""
    fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
    width = hours[1] - hours[0] if len(hours) > 1 else 1.0
    for k, (start, end) in enumerate(dark):
        ax.axvspan(start, end, color="0.85", lw=0, label="lights off" if k == 0 else None)
    for c, cls in enumerate(classes):
        ax.plot(hours + width / 2, importance[c], marker="o", ms=3, label=cls)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlim(hours[0], hours[-1] + width)
    ticks = hours[:: max(1, len(hours) // 12)]
    ax.set_xticks(ticks, [clock_label(h) for h in ticks])
    ax.set_xlabel("interval start (clock time)")
    ax.set_ylabel("attribution summed over the cage")
    ax.set_title(title, fontsize=10)
    ax.legend(ncols=5, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18))
    _save(fig, path)
