"""Figures users look at: the confusion matrix in the paper's Table 1 layout, loss curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lmt_stereotype.config import CLASSES  # noqa: E402
from lmt_stereotype.files import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=150, bbox_inches="tight")
    plt.close(fig)


def confusion_figure(counts: np.ndarray, title: str, metrics: dict[str, float], path: Path | str) -> None:
    """Counts with rows = labels and columns = predictions in the order AM, JM, AF, JF, like Table 1.

    Cells are shaded by the share of their row, so classes of different sizes read alike.
    """
    counts = np.asarray(counts)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("Prediction")
    ax.set_ylabel("Labels")
    ax.set_title(title, fontsize=10, pad=28)
    p = metrics["permutation_p_value"]
    caption = (
        f"accuracy {metrics['accuracy']:.1%}, interval over cages {metrics['accuracy_ci_low']:.1%}"
        f"–{metrics['accuracy_ci_high']:.1%}\nchance {metrics['chance_level']:.0%}, "
        + (f"permutation p = {p:.3g}" if np.isfinite(p) else "no permutation test (cages leak)")
        + f"; females {metrics['accuracy_female']:.1%}, males {metrics['accuracy_male']:.1%}"
    )
    ax.text(0.5, -0.08, caption, transform=ax.transAxes, ha="center", va="top", fontsize=8)
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
