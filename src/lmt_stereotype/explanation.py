"""Where and when the target's classes differ: the paper's class-averaged activation maps, and attributions.

What these maps can say: before the ReLU a conv channel's class mean is exactly the
convolution of the class-mean input (convolution is linear), so a first-layer
class-averaged map is a smoothed class-average stop density, not evidence of what the
classifier uses. Gradient attributions (Captum's Integrated Gradients on the input and
Grad-CAM on each branch, for each recording's own class) say what the trained network
responds to; a network with random weights must give clearly different ones.

Every map is an array on a grid of the cage; :func:`map_extent` places it in cage
centimetres, accounting for the cells a valid convolution loses at the border and for
the pooling. There is one map per class of the target, in its order (the stacks'
``classes``: the paper's AM, JM, AF, JF, or a lab's WT and KO).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerGradCam, LayerGradientXActivation

from lmt_stereotype.clock import dark_spans, interval_start_hours
from lmt_stereotype.config import ExplainParams, Params
from lmt_stereotype.design import cage_strata, design_permutation, permutation_words
from lmt_stereotype.figures import channel_grid_figure, class_maps_figure, mouse_figure, time_importance_figure
from lmt_stereotype.files import read_table, save_npz
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import Target
from lmt_stereotype.models import CNNClassifier

log = logging.getLogger(__name__)


def map_extent(grid: int, arena_cm: float, kernel: int = 1, pool: int = 1) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in cm, y down, of a conv(kernel) -> pool(pool) map.

    Output cell i of a valid k x k convolution is centred on input tile i + (k - 1)/2, so
    the map starts (k - 1)/2 tiles in from the wall; a pooled cell spans ``pool`` of them
    and the rows a floor division drops are lost at the far side.
    """
    cell = arena_cm / grid
    border = (kernel - 1) / 2
    n = (grid - kernel + 1) // pool
    low, high = border * cell, (border + n * pool) * cell
    return (low, high, high, low)


def branch_activations(classifier: CNNClassifier, X: np.ndarray) -> list[np.ndarray]:
    """Each branch's output (after ReLU and pooling, what the linear layer sees) per recording: (n, C, H, W)."""
    with classifier.torch_threads(), torch.inference_mode():
        x = classifier.to_tensor(X)
        return [branch(x).numpy() for branch in classifier.module_.branches]


def class_means(values: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean over the recordings of each class: (n_classes, ...); NaN for a class without recordings."""
    out = np.full((n_classes, *values.shape[1:]), np.nan)
    for c in range(n_classes):
        if (y == c).any():
            out[c] = values[y == c].mean(axis=0)
    return out


@dataclass
class Contrast:
    """Each class against the other classes' recordings, on a family of maps (maps, H, W).

    ``difference``: per class and map, the class mean minus the other recordings' mean;
    ``threshold``: per class, the (1 - alpha) quantile under design permutations of the
    largest standardised |difference| over every tile of every map (family-wise over the
    whole family, channels included); ``spots``: per class and map, the (row, col) of at
    most ``top`` tiles whose standardised |difference| exceeds it, largest first.
    """

    difference: np.ndarray
    threshold: np.ndarray
    spots: list[list[list[tuple[int, int]]]]


def contrast(
    values: np.ndarray,
    target: Target,
    y: np.ndarray,
    cages: np.ndarray,
    n_permutations: int = 199,
    alpha: float = 0.05,
    top: int = 3,
    seed: int = 0,
) -> Contrast:
    """Tiles where a class differs most from the others, surviving a max-statistic permutation test.

    ``values`` is (n, maps, H, W), the same for every class of ``target``, or (classes, n,
    maps, H, W) when each class has its own (an attribution to that class's logit).
    Differences are standardised by each tile's standard deviation over recordings, so
    channels of any scale compete fairly. Labels ``y`` are permuted as the design allows
    (:func:`~lmt_stereotype.design.design_permutation`: a factor of the target constant
    within cages moves between whole cages, one that varies is shuffled within each cage;
    for the paper's classes, sex across cages and age within a cage).
    """
    n_classes = len(target.classes)
    per_class = values.ndim == 5
    stacked = values if per_class else np.broadcast_to(values, (n_classes, *values.shape))
    flat = stacked.reshape(n_classes, len(y), -1).astype(np.float64)
    sd = flat.std(axis=1)
    scale = np.where(sd > 0, sd, np.inf)

    def differences(labels: np.ndarray) -> np.ndarray:
        out = np.full((n_classes, flat.shape[2]), np.nan)
        for c in range(n_classes):
            mine = labels == c
            if mine.any() and (~mine).any():
                out[c] = flat[c, mine].mean(axis=0) - flat[c, ~mine].mean(axis=0)
        return out

    observed = differences(y)
    rng = np.random.default_rng(seed)
    null = np.stack(
        [
            np.nanmax(np.abs(differences(design_permutation(target, y, cages, rng))) / scale, axis=1)
            for _ in range(n_permutations)
        ]
    )
    threshold = np.quantile(null, 1 - alpha, axis=0)
    shape = values.shape[-3:]
    strength = (np.abs(observed) / scale).reshape(n_classes, shape[0], -1)
    spots = []
    for c in range(n_classes):
        per_map = []
        for m in range(shape[0]):
            order = np.argsort(np.nan_to_num(strength[c, m], nan=0.0))[::-1][:top]
            per_map.append([np.unravel_index(t, shape[1:]) for t in order if strength[c, m, t] > threshold[c]])
        spots.append(per_map)
    return Contrast(observed.reshape(n_classes, *shape), threshold, spots)


def centred_logits(module: torch.nn.Module):
    """The network with each logit minus the mean logit: softmax-equivalent, so a class's attribution
    is evidence for it against the others, comparable across recordings whatever their class."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = module(x)
        return logits - logits.mean(dim=1, keepdim=True)

    return forward


def n_outputs(classifier: CNNClassifier) -> int:
    """How many classes the fitted network scores (its logits)."""
    return len(classifier.classes_)


def integrated_gradients(classifier: CNNClassifier, X: np.ndarray, steps: int = 32) -> np.ndarray:
    """Integrated Gradients of every class's centred logit w.r.t. each (transformed) stack, from an empty
    cage (no stops): (classes, n, T, N, N)."""
    with classifier.torch_threads():
        x = classifier.to_tensor(X).contiguous()
        ig = IntegratedGradients(centred_logits(classifier.module_))
        return np.stack(
            [
                ig.attribute(x, baselines=torch.zeros_like(x), target=c, n_steps=steps, internal_batch_size=len(x))
                .detach()
                .numpy()
                for c in range(n_outputs(classifier))
            ]
        )


def logit_contributions(classifier: CNNClassifier, X: np.ndarray) -> list[np.ndarray]:
    """Each branch cell's share of every class's centred logit: (classes, n, H, W) per branch.

    The linear layer makes a logit a sum over the pooled cells of weight x activation (plus
    a bias), so gradient x activation at a branch's output, summed over its channels, is
    that share. Grad-CAM averages the gradient over the map first, which for this head
    throws away where a channel's weight lies.
    """
    out = []
    with classifier.torch_threads():
        x = classifier.to_tensor(X).contiguous()
        forward = centred_logits(classifier.module_)
        for branch in classifier.module_.branches:
            share = LayerGradientXActivation(forward, branch)
            out.append(
                np.stack(
                    [share.attribute(x, target=c).sum(dim=1).detach().numpy() for c in range(n_outputs(classifier))]
                )
            )
    return out


def grad_cam(classifier: CNNClassifier, X: np.ndarray) -> list[np.ndarray]:
    """Grad-CAM of every class's centred logit on each branch's convolution: (classes, n, H, W) per branch."""
    out = []
    with classifier.torch_threads():
        x = classifier.to_tensor(X).contiguous()
        forward = centred_logits(classifier.module_)
        for branch in classifier.module_.branches:
            cam = LayerGradCam(forward, branch.conv)
            out.append(
                np.stack(
                    [
                        cam.attribute(x, target=c, relu_attributions=True)[:, 0].detach().numpy()
                        for c in range(n_outputs(classifier))
                    ]
                )
            )
    return out


def own_class_means(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """From (classes, n, ...) attributions: for each class, the mean of its own map over its recordings."""
    n_classes = len(values)
    return np.stack([class_means(values[c], y, n_classes)[c] for c in range(n_classes)])


def spot_positions(spots: list[tuple[int, int]], extent: tuple[float, float, float, float], shape: tuple[int, int]):
    """Cage positions (cm) of map cells given as (row, col)."""
    left, right, bottom, top = extent
    h, w = shape
    return [(left + (s[-1] + 0.5) * (right - left) / w, top + (s[-2] + 0.5) * (bottom - top) / h) for s in spots]


def interval_clock(stacks: Stacks, lights_on: tuple[float, float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clock hour (counting on past 24) at which each interval starts, and the dark stretches between.

    Interval 0 starts at the stacks' ``start_hour``: the same clock hour in every stack
    aligned on the clock (``histograms.align: clock``); aligned on each recording, their
    median, with a warning when they started at different times. An interval spans
    ``interval_s / seconds_per_hour`` clock hours (the simulator's day runs faster than a
    real one, :mod:`~lmt_stereotype.clock`).
    """
    starts = stacks.start_hour[np.isfinite(stacks.start_hour)]
    start = float(np.median(starts)) if len(starts) else 0.0
    if len(starts) and np.ptp(starts) * stacks.seconds_per_hour > stacks.interval_s / 2:
        log.warning(
            "recordings start between %.1f h and %.1f h: the time plots place interval 0 at %.1f h, but each "
            "stack counts from its own first frame (histograms.align: clock puts them on one clock)",
            starts.min(),
            starts.max(),
            start,
        )
    n_intervals = stacks.X.shape[1]
    hours = interval_start_hours(start, n_intervals, stacks.interval_s, stacks.seconds_per_hour)
    end = hours[-1] + stacks.interval_s / stacks.seconds_per_hour
    return hours, dark_spans(float(hours[0]), float(end), lights_on)


def _rule(params: ExplainParams, permuted: str) -> str:
    """How the red crosses were chosen; ``permuted`` says how the design permutes the labels
    (:func:`~lmt_stereotype.design.permutation_words`: "sex across cages, age within a cage")."""
    return (
        f"Red x: up to {params.max_spots} tiles of this map where the class mean differs most from the other "
        f"classes' recordings, in units of the tile's SD over recordings, beyond the {1 - params.alpha:.0%} "
        f"quantile of the largest such difference over every tile of every map of the family under "
        f"{params.n_permutations} design permutations of the labels ({permuted})."
    )


ACTIVATION_NOTE = (
    "Mean of the channel's output (after ReLU and max-pool, what the linear layer reads) over the recordings "
    "of each class, placed where its receptive fields lie in the cage. Before the ReLU a class mean is exactly "
    "the convolution of the class-mean input, so these maps are smoothed class-average stop densities, not "
    "evidence of what the classifier uses: see the attribution figures. "
)
ATTRIBUTION_NOTE = (
    "Attribution to the class's logit minus the mean logit (evidence for the class against the others), "
    "averaged over the class's recordings. "
)
GRAD_CAM_NOTE = (
    "Grad-CAM weighs each channel by its gradient averaged over the map; with this network's linear head that "
    "loses where the weight lies (on a planted test region the 3x3 map peaked beside it): read it with the "
    "logit shares. "
)


class _Explainer:
    """Draws one family of class maps with its spots: the shared part of every explanation figure."""

    def __init__(self, params: Params, stacks: Stacks, folder: Path):
        self.params, self.folder = params, folder
        self.target, self.y, self.cages = stacks.target, stacks.y, stacks.cage
        self.permuted = permutation_words(self.target, self.y, self.cages)
        cfg = params.explain
        self.test = {"n_permutations": cfg.n_permutations, "alpha": cfg.alpha, "top": cfg.max_spots, "seed": cfg.seed}

    def contrast(self, values: np.ndarray) -> Contrast:
        return contrast(values, self.target, self.y, self.cages, **self.test)

    def figure(
        self, means, differ: Contrast, *, index: int, extent, title: str, note: str, label: str, name: str
    ) -> Path:
        """``means`` (classes, H, W) as ``name``, with the spots of map ``index`` of ``differ``."""
        shape = means.shape[-2:]
        classes = self.target.classes
        spots = [spot_positions(differ.spots[c][index], extent, shape) for c in range(len(classes))]
        path = self.folder / name
        class_maps_figure(
            means,
            extent,
            classes=classes,
            layout=self.params.cage_layout,
            arena_size_cm=self.params.lmt.arena_size_cm,
            title=title,
            caption=note + _rule(self.params.explain, self.permuted),
            label=label,
            path=path,
            spots=spots,
        )
        return path


def explain_model(classifier: CNNClassifier, stacks: Stacks, params: Params, folder: Path, what: str) -> list[Path]:
    """Activation maps of every channel, Integrated Gradients, Grad-CAM and logit shares per class, and
    time importance, for ``classifier`` on all ``stacks``.

    Writes the figures and ``maps.npz`` into ``folder``; ``what`` names the model and
    recordings in the titles (e.g. "final model, on its training recordings").
    """
    _check_classes(classifier, stacks)
    folder.mkdir(parents=True, exist_ok=True)
    X, y, grid, arena = stacks.X, stacks.y, stacks.X.shape[-1], params.lmt.arena_size_cm
    classes = stacks.classes
    draw = _Explainer(params, stacks, folder)
    arrays, files = {}, []
    for kernel, acts in zip(classifier.kernel_sizes, branch_activations(classifier, X)):
        extent = map_extent(grid, arena, kernel, classifier.pool)
        means, differ = class_means(acts, y, len(classes)), draw.contrast(acts)
        arrays |= {f"activation_k{kernel}": means, f"activation_k{kernel}_difference": differ.difference}
        overview = folder / f"activation_k{kernel}.png"
        title = f"{kernel}x{kernel} branch, every channel: mean activation per class ({what})"
        channel_grid_figure(means, extent, arena, title, overview, classes=classes)
        files.append(overview)
        for ch in range(acts.shape[1]):
            title = f"{kernel}x{kernel} branch, channel {ch}: mean activation per class ({what})"
            name = f"activation_k{kernel}_ch{ch:02d}.png"
            files.append(
                draw.figure(
                    means[:, ch],
                    differ,
                    index=ch,
                    extent=extent,
                    title=title,
                    note=ACTIVATION_NOTE,
                    label="mean activation",
                    name=name,
                )
            )
    ig = integrated_gradients(classifier, X, params.explain.ig_steps)
    ig_space = ig.sum(axis=2)
    arrays |= {"ig_space": own_class_means(ig_space, y), "ig_time": own_class_means(ig.sum(axis=(3, 4)), y)}
    title = f"Integrated Gradients summed over time ({what})"
    differ = draw.contrast(ig_space[:, :, None])
    extent = map_extent(grid, arena)
    files.append(
        draw.figure(
            arrays["ig_space"],
            differ,
            index=0,
            extent=extent,
            title=title,
            note=ATTRIBUTION_NOTE,
            label="attribution",
            name="integrated_gradients.png",
        )
    )
    branch_maps = {
        "gradcam": (grad_cam(classifier, X), 1, "Grad-CAM of the {k}x{k} convolution", "Grad-CAM", GRAD_CAM_NOTE),
        "contribution": (
            logit_contributions(classifier, X),
            classifier.pool,
            "share of the class logit, {k}x{k} branch",
            "logit share",
            "",
        ),
    }
    for name, (maps, pool, title, label, note) in branch_maps.items():
        for kernel, values in zip(classifier.kernel_sizes, maps):
            arrays[f"{name}_k{kernel}"] = means = own_class_means(values, y)
            extent = map_extent(grid, arena, kernel, pool)
            differ = draw.contrast(values[:, :, None])
            heading = f"{title.format(k=kernel)} ({what})"
            files.append(
                draw.figure(
                    means,
                    differ,
                    index=0,
                    extent=extent,
                    title=heading,
                    note=ATTRIBUTION_NOTE + note,
                    label=label,
                    name=f"{name}_k{kernel}.png",
                )
            )
    hours, dark = interval_clock(stacks, params.room.lights_on)
    path = folder / "time_importance.png"
    title = f"When it matters: Integrated Gradients per interval ({what})"
    time_importance_figure(arrays["ig_time"], classes=classes, hours=hours, dark=dark, title=title, path=path)
    save_npz(folder / "maps.npz", **arrays)
    return [*files, path, folder / "maps.npz"]


def _check_classes(classifier: CNNClassifier, stacks: Stacks, name: str = "the CNN") -> None:
    """ValueError unless the network scores one output per class of the stacks' target."""
    if n_outputs(classifier) != len(stacks.classes):
        raise ValueError(
            f"{name} scores {n_outputs(classifier)} classes, the stacks' target {stacks.target_column} has "
            f"{len(stacks.classes)} ({', '.join(stacks.classes)}): run train again"
        )


def _words(names: list[str], last: str = "and") -> str:
    """``"A"``, ``"A and B"``, ``"A, B and C"`` (or ``"A, B or C"``)."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {last} " + names[-1]


def held_out_note(stacks: Stacks) -> str:
    """What comparing classes across held-out models can and cannot say, for the cohort's design
    (:func:`~lmt_stereotype.design.cage_strata`): the paper's words for its single-sex cages."""
    strata, _ = cage_strata(stacks.target, stacks.y, stacks.cage)
    if stacks.target.is_paper and list(strata) == ["M", "F"]:
        return (
            "Each cage is explained by a model that never saw it; a balanced fold holds out a male and a female cage "
            "together, so each model explains both sexes, but models differ between pairs of cages and a cage is "
            "single-sex, so differences between the sexes may still partly reflect differences between models. "
        )
    if len(strata) >= 2:
        names = _words(list(strata))
        return (
            f"Each cage is explained by a model that never saw it; a balanced fold holds out one cage each of "
            f"{names} together, so each model explains {names} cages alike, but models differ between groups of "
            f"cages and a cage holds {_words(list(strata), 'or')} mice only, so differences between {names} may "
            "still partly reflect differences between models. "
        )
    return (
        "Each cage is explained by a model that never saw it, one cage per fold; the classes within a cage are "
        "explained by the same model, but differences between cages may still partly reflect differences "
        "between models. "
    )


def explain_held_out(fold_models: dict[str, CNNClassifier], stacks: Stacks, params: Params, folder: Path) -> list[Path]:
    """Each cage's held-out model (the balanced fold that first held it out) on the cage it never saw:
    activation maps per cage (channels are not comparable across models), Integrated Gradients of
    every recording pooled over cages."""
    missing = sorted(set(stacks.cage) - set(fold_models))
    if missing:
        raise ValueError(f"no held-out model for cage(s) {', '.join(missing)}: run train again")
    for fold, model in fold_models.items():
        _check_classes(model, stacks, f"the held-out CNN of {fold}")
    folder.mkdir(parents=True, exist_ok=True)
    X, y, grid, arena = stacks.X, stacks.y, stacks.X.shape[-1], params.lmt.arena_size_cm
    classes = stacks.classes
    arrays, files = {}, []
    ig = np.zeros((len(classes), *X.shape))
    for fold, model in fold_models.items():
        test = stacks.cage == fold
        for kernel, acts in zip(model.kernel_sizes, branch_activations(model, X[test])):
            arrays[f"activation_k{kernel}_{fold}"] = means = class_means(acts, y[test], len(classes))
            path = folder / f"activation_k{kernel}_{fold}.png"
            title = f"{kernel}x{kernel} branch of the model that never saw {fold}: mean activation on {fold}"
            extent = map_extent(grid, arena, kernel, model.pool)
            channel_grid_figure(means, extent, arena, title, path, classes=classes)
            files.append(path)
        ig[:, test] = integrated_gradients(model, X[test], params.explain.ig_steps)
    ig_space = ig.sum(axis=2)
    arrays |= {"ig_space": own_class_means(ig_space, y), "ig_time": own_class_means(ig.sum(axis=(3, 4)), y)}
    draw = _Explainer(params, stacks, folder)
    title = "Integrated Gradients summed over time, each recording by the fold model that never saw its cage"
    note = ATTRIBUTION_NOTE + held_out_note(stacks)
    differ = draw.contrast(ig_space[:, :, None])
    path = draw.figure(
        arrays["ig_space"],
        differ,
        index=0,
        extent=map_extent(grid, arena),
        title=title,
        note=note,
        label="attribution",
        name="integrated_gradients.png",
    )
    hours, dark = interval_clock(stacks, params.room.lights_on)
    time_path = folder / "time_importance.png"
    title = "When it matters: Integrated Gradients per interval, held-out recordings"
    time_importance_figure(arrays["ig_time"], classes=classes, hours=hours, dark=dark, title=title, path=time_path)
    save_npz(folder / "maps.npz", **arrays)
    return [*files, path, time_path, folder / "maps.npz"]


def mouse_sample_figure(stacks: Stacks, k: int, params: Params, path: Path) -> Path:
    """The paper's Figure 1 for mouse-recording ``k`` of the stacks: stops over time, spots, histogram map."""
    recording, animal, cls = stacks.recording[k], int(stacks.animal_id[k]), stacks.label[k]
    stops = read_table(params.data.stops / f"{recording}.parquet")
    title = f"{recording}, animal {animal} ({cls})"
    mine = stops[stops["animal_id"] == animal]
    return mouse_figure(
        mine,
        stacks.X[k],
        layout=params.cage_layout,
        arena_size_cm=params.lmt.arena_size_cm,
        interval_s=stacks.interval_s,
        title=title,
        path=path,
    )


def mouse_figures(stacks: Stacks, params: Params, folder: Path) -> list[Path]:
    """The paper's Figure 1 for the first mouse-recording of each class of the target."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for cls in stacks.classes:
        hits = np.flatnonzero(stacks.label == cls)
        if len(hits):
            k = hits[0]
            safe = "".join(c if c.isalnum() or c in "-." else "_" for c in cls)  # a class such as "KO/+"
            path = folder / f"{safe}_{stacks.recording[k]}_{int(stacks.animal_id[k])}.png"
            files.append(mouse_sample_figure(stacks, k, params, path))
    return files
