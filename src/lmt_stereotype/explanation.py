"""Where and when the classes differ: the paper's class-averaged activation maps, and attributions.

What these maps can say: before the ReLU a conv channel's class mean is exactly the
convolution of the class-mean input (convolution is linear), so a first-layer
class-averaged map is a smoothed class-average stop density, not evidence of what the
classifier uses. Gradient attributions (Captum's Integrated Gradients on the input and
Grad-CAM on each branch, for each recording's own class) say what the trained network
responds to; a network with random weights must give clearly different ones.

Every map is an array on a grid of the cage; :func:`map_extent` places it in cage
centimetres, accounting for the cells a valid convolution loses at the border and for
the pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerGradCam, LayerGradientXActivation

from lmt_stereotype.config import CLASSES, ExplainParams, Params
from lmt_stereotype.figures import channel_grid_figure, class_maps_figure, mouse_figure, time_importance_figure
from lmt_stereotype.files import read_table, save_npz
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier


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
    with classifier._threads(), torch.inference_mode():
        x = classifier.to_tensor(X)
        return [branch(x).numpy() for branch in classifier.module_.branches]


def class_means(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over the recordings of each class: (len(CLASSES), ...); NaN for a class without recordings."""
    out = np.full((len(CLASSES), *values.shape[1:]), np.nan)
    for c in range(len(CLASSES)):
        if (y == c).any():
            out[c] = values[y == c].mean(axis=0)
    return out


@dataclass
class Contrast:
    """Each class against the others on a stack of maps (..., H, W).

    ``difference``: class mean minus the mean of the other classes' recordings;
    ``threshold``: per class and map, the (1 - alpha) quantile of the largest absolute
    difference over the map under label permutations (family-wise over tiles);
    ``spots``: per class, the (map index..., row, col) of the at most ``top`` tiles with the
    largest difference that exceeds it.
    """

    difference: np.ndarray
    threshold: np.ndarray
    spots: list[list[tuple[int, ...]]]


def contrast(
    values: np.ndarray, y: np.ndarray, n_permutations: int = 199, alpha: float = 0.05, top: int = 3, seed: int = 0
) -> Contrast:
    """Tiles where a class differs most from the others, surviving a max-statistic permutation test."""
    n = len(y)
    flat = values.reshape(n, -1)
    map_shape = values.shape[1:-2]
    n_maps, n_tiles = int(np.prod(map_shape)), values.shape[-2] * values.shape[-1]

    def differences(labels: np.ndarray) -> np.ndarray:
        onehot = (labels[:, None] == np.arange(len(CLASSES))[None, :]).astype(float)
        counts = onehot.sum(axis=0)
        total = flat.sum(axis=0)
        sums = onehot.T @ flat
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts[:, None] - (total - sums) / (n - counts)[:, None]

    observed = differences(y)
    rng = np.random.default_rng(seed)
    null_max = np.stack(
        [
            np.abs(differences(rng.permutation(y)).reshape(len(CLASSES), n_maps, n_tiles)).max(axis=2)
            for _ in range(n_permutations)
        ]
    )
    threshold = np.quantile(null_max, 1 - alpha, axis=0)  # (classes, maps)
    diff = observed.reshape(len(CLASSES), n_maps, n_tiles)
    spots = []
    for c in range(len(CLASSES)):
        strength = np.where(np.abs(diff[c]) > threshold[c][:, None], np.abs(diff[c]), 0)
        best = np.argsort(strength, axis=None)[::-1][:top]
        spots.append(
            [
                (*np.unravel_index(m, map_shape), *np.unravel_index(t, values.shape[-2:]))
                for m, t in (np.unravel_index(i, strength.shape) for i in best)
                if strength[m, t] > 0
            ]
        )
    return Contrast(diff.reshape(len(CLASSES), *values.shape[1:]), threshold.reshape(len(CLASSES), *map_shape), spots)


def integrated_gradients(classifier: CNNClassifier, X: np.ndarray, y: np.ndarray, steps: int = 32) -> np.ndarray:
    """Integrated Gradients of each recording's own class logit w.r.t. its (transformed) stack, from an
    empty cage (no stops): (n, T, N, N)."""
    model = classifier.module_
    with classifier._threads():
        x = classifier.to_tensor(X).contiguous()
        ig = IntegratedGradients(model)
        attr = ig.attribute(x, baselines=torch.zeros_like(x), target=torch.as_tensor(y), n_steps=steps)
    return attr.detach().numpy()


def logit_contributions(classifier: CNNClassifier, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Each branch cell's exact share of the recording's own class logit: (n, H, W) per branch.

    The linear layer makes the logit a sum over the pooled cells of weight x activation, so
    gradient x activation at a branch's output, summed over its channels, is that share.
    Grad-CAM averages the gradient over the map first, which for this head throws away
    where a channel's weight lies.
    """
    out = []
    with classifier._threads():
        x = classifier.to_tensor(X).contiguous()
        for branch in classifier.module_.branches:
            share = LayerGradientXActivation(classifier.module_, branch)
            out.append(share.attribute(x, target=torch.as_tensor(y)).sum(dim=1).detach().numpy())
    return out


def grad_cam(classifier: CNNClassifier, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Grad-CAM of each recording's own class on each branch's convolution: one (n, H, W) per branch."""
    out = []
    with classifier._threads():
        x = classifier.to_tensor(X).contiguous()
        for branch in classifier.module_.branches:
            cam = LayerGradCam(classifier.module_, branch.conv)
            out.append(cam.attribute(x, target=torch.as_tensor(y), relu_attributions=True)[:, 0].detach().numpy())
    return out


def spot_positions(spots: list[tuple[int, ...]], extent: tuple[float, float, float, float], shape: tuple[int, int]):
    """Cage positions (cm) of map cells given as (..., row, col)."""
    left, right, bottom, top = extent
    h, w = shape
    return [(left + (s[-1] + 0.5) * (right - left) / w, top + (s[-2] + 0.5) * (bottom - top) / h) for s in spots]


def light_phases(n_intervals: int, params: ExplainParams) -> tuple[np.ndarray, np.ndarray]:
    """Clock hour at which each interval starts, and whether the lights are off then."""
    hours = params.recording_start_hour + np.arange(n_intervals) * params.interval_hours
    clock = hours % 24
    on, off = params.lights_on
    lit = (clock >= on) & (clock < off) if on <= off else (clock >= on) | (clock < off)
    return hours, ~lit


def _rule(params: ExplainParams) -> str:
    return (
        f"Red x: up to {params.max_spots} tiles where the class mean differs most from the other classes' "
        f"recordings and |difference| exceeds the {1 - params.alpha:.0%} quantile of the largest |difference| "
        f"over the map under {params.n_permutations} permutations of the labels across recordings."
    )


ACTIVATION_NOTE = (
    "Mean of the channel's output (after ReLU and max-pool, what the linear layer reads) over the recordings "
    "of each class, placed where its receptive fields lie in the cage. Before the ReLU a class mean is exactly "
    "the convolution of the class-mean input, so these maps are smoothed class-average stop densities, not "
    "evidence of what the classifier uses: see the attribution figures. "
)
ATTRIBUTION_NOTE = (
    "Attribution to each recording's own class, averaged over the recordings of the class: what the trained "
    "network responds to (positive: evidence for the class). "
)


def explain_model(
    classifier: CNNClassifier, X: np.ndarray, y: np.ndarray, params: Params, folder: Path, what: str
) -> list[Path]:
    """Activation maps of every channel, Integrated Gradients and Grad-CAM per class, time importance.

    Writes the figures and ``maps.npz`` into ``folder``; ``what`` names the model and
    recordings in the titles (e.g. "final model, all recordings").
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg, arena, layout = params.explain, params.lmt.arena_size_cm, params.cage_layout
    grid, pool = X.shape[-1], classifier.pool
    arrays, files = {}, []
    test = {"n_permutations": cfg.n_permutations, "alpha": cfg.alpha, "top": cfg.max_spots, "seed": cfg.seed}
    for kernel, acts in zip(classifier.kernel_sizes, branch_activations(classifier, X)):
        extent = map_extent(grid, arena, kernel, pool)
        means, differ = class_means(acts, y), contrast(acts, y, **test)
        arrays |= {f"activation_k{kernel}": means, f"activation_k{kernel}_difference": differ.difference}
        overview = folder / f"activation_k{kernel}.png"
        channel_grid_figure(
            means,
            extent,
            arena,
            f"{kernel}x{kernel} branch, every channel: mean activation per class ({what})",
            overview,
        )
        files.append(overview)
        for ch in range(acts.shape[1]):
            spots = [
                spot_positions([s for s in differ.spots[c] if s[0] == ch], extent, acts.shape[-2:])
                for c in range(len(CLASSES))
            ]
            path = folder / f"activation_k{kernel}_ch{ch:02d}.png"
            title = f"{kernel}x{kernel} branch, channel {ch}: mean activation per class ({what})"
            class_maps_figure(
                means[:, ch], extent, layout, arena, title, ACTIVATION_NOTE + _rule(cfg), "mean activation", path, spots
            )
            files.append(path)
    ig = integrated_gradients(classifier, X, y, cfg.ig_steps)
    ig_space, ig_time = ig.sum(axis=1), ig.sum(axis=(2, 3))
    arrays |= {"ig": class_means(ig, y), "ig_space": class_means(ig_space, y), "ig_time": class_means(ig_time, y)}
    differ = contrast(ig_space[:, None], y, **test)
    extent = map_extent(grid, arena)
    spots = [spot_positions(s, extent, (grid, grid)) for s in differ.spots]
    title = f"Integrated Gradients summed over time ({what})"
    path = folder / "integrated_gradients.png"
    class_maps_figure(
        arrays["ig_space"], extent, layout, arena, title, ATTRIBUTION_NOTE + _rule(cfg), "attribution", path, spots
    )
    files.append(path)
    branch_maps = {
        "gradcam": (grad_cam(classifier, X, y), 1, "Grad-CAM of the {k}x{k} convolution", "Grad-CAM"),
        "contribution": (
            logit_contributions(classifier, X, y),
            pool,
            "share of the class logit, {k}x{k} branch",
            "logit share",
        ),
    }
    for name, (maps, map_pool, title, label) in branch_maps.items():
        for kernel, values in zip(classifier.kernel_sizes, maps):
            arrays[f"{name}_k{kernel}"] = means = class_means(values, y)
            extent = map_extent(grid, arena, kernel, map_pool)
            differ = contrast(values[:, None], y, **test)
            spots = [spot_positions(s, extent, values.shape[-2:]) for s in differ.spots]
            path = folder / f"{name}_k{kernel}.png"
            caption = ATTRIBUTION_NOTE + _rule(cfg)
            heading = f"{title.format(k=kernel)} ({what})"
            class_maps_figure(means, extent, layout, arena, heading, caption, label, path, spots)
            files.append(path)
    hours, dark = light_phases(X.shape[1], cfg)
    path = folder / "time_importance.png"
    time_importance_figure(
        arrays["ig_time"], hours, dark, f"When it matters: Integrated Gradients per interval ({what})", path
    )
    files.append(path)
    save_npz(folder / "maps.npz", **arrays)
    return [*files, folder / "maps.npz"]


def explain_held_out(fold_models: dict[str, CNNClassifier], stacks: Stacks, params: Params, folder: Path) -> list[Path]:
    """Each leave-one-cage-out fold's model on the cage it never saw: activation maps per fold (their
    channels are not comparable across folds), Integrated Gradients of every recording pooled over folds."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg, arena, layout = params.explain, params.lmt.arena_size_cm, params.cage_layout
    X, y, grid = stacks.X, stacks.y, stacks.X.shape[-1]
    arrays, files = {}, []
    ig = np.zeros_like(X, dtype=np.float64)
    for fold, model in fold_models.items():
        test = stacks.cage == fold
        for kernel, acts in zip(model.kernel_sizes, branch_activations(model, X[test])):
            arrays[f"activation_k{kernel}_{fold}"] = means = class_means(acts, y[test])
            path = folder / f"activation_k{kernel}_{fold}.png"
            title = f"{kernel}x{kernel} branch of the model that never saw {fold}: mean activation on {fold}"
            channel_grid_figure(means, map_extent(grid, arena, kernel, model.pool), arena, title, path)
            files.append(path)
        ig[test] = integrated_gradients(model, X[test], y[test], cfg.ig_steps)
    ig_space = ig.sum(axis=1)
    arrays |= {"ig_space": class_means(ig_space, y), "ig_time": class_means(ig.sum(axis=(2, 3)), y)}
    differ = contrast(ig_space[:, None], y, cfg.n_permutations, cfg.alpha, cfg.max_spots, cfg.seed)
    extent = map_extent(grid, arena)
    spots = [spot_positions(s, extent, (grid, grid)) for s in differ.spots]
    path = folder / "integrated_gradients.png"
    title = "Integrated Gradients summed over time, each recording by the fold model that never saw its cage"
    class_maps_figure(
        arrays["ig_space"], extent, layout, arena, title, ATTRIBUTION_NOTE + _rule(cfg), "attribution", path, spots
    )
    hours, dark = light_phases(X.shape[1], cfg)
    time_path = folder / "time_importance.png"
    title = "When it matters: Integrated Gradients per interval, held-out recordings"
    time_importance_figure(arrays["ig_time"], hours, dark, title, time_path)
    save_npz(folder / "maps.npz", **arrays)
    return [*files, path, time_path, folder / "maps.npz"]


def mouse_sample_figure(stacks: Stacks, k: int, params: Params, path: Path) -> Path:
    """The paper's Figure 1 for mouse-recording ``k`` of the stacks: stops over time, spots, histogram map."""
    recording, animal, cls = stacks.recording[k], int(stacks.animal_id[k]), stacks.label[k]
    stops = read_table(params.data.stops / f"{recording}.parquet")
    title = f"{recording}, animal {animal} ({cls})"
    mine = stops[stops["animal_id"] == animal]
    layout, arena = params.cage_layout, params.lmt.arena_size_cm
    return mouse_figure(mine, stacks.X[k], layout, arena, stacks.interval_s, title, path)


def mouse_figures(stacks: Stacks, params: Params, folder: Path) -> list[Path]:
    """The paper's Figure 1 for the first mouse-recording of each class."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for cls in CLASSES:
        hits = np.flatnonzero(stacks.label == cls)
        if len(hits):
            k = hits[0]
            path = folder / f"{cls}_{stacks.recording[k]}_{int(stacks.animal_id[k])}.png"
            files.append(mouse_sample_figure(stacks, k, params, path))
    return files
