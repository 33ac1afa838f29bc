"""Benchmark: CNN training time per epoch and per leave-one-cage-out cross-validation.

Not a test: it measures. Run on an idle machine, from the project root:

    .venv/bin/python benchmarks/cnn_training.py [--stacks data/processed/stacks.npz] [--paper]

Prints the machine's float32 matmul rate (2048 x 2048), then seconds per training epoch
(88 recordings: 11 of 12 cages) for the demo stacks and, with ``--paper``, for the paper's
72 x 30 x 30 input (random counts of that size), with recordings x epochs per second and
the achieved GFLOP/s against that peak, then one full 12-fold cross-validation at the
``cnn`` parameters: fold after fold with torch's threads (as ``train`` does), fold after
fold in one thread, and the folds trained together in one process per core of one thread
each.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.base import clone

from lmt_stereotype.config import load_params
from lmt_stereotype.evaluation import FoldedModel, leave_one_cage_out
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier
from lmt_stereotype.parallel import available_cores, process_pool


def epoch_seconds(X: np.ndarray, y: np.ndarray, model: CNNClassifier, epochs: int = 5) -> float:
    """Median wall time of one training epoch (after one warm-up epoch)."""
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        model.set_params(epochs=1).fit(X, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def training_gflop(T: int, N: int, cnn, n_classes: int = 4) -> float:
    """Floating-point work of one training pass per recording, in GFLOP: the convolutions run
    forward and for their weight gradients (the input needs no gradient: 2x forward), the linear
    layer forward and for both gradients (3x); ReLU, pooling and the loss are negligible."""
    conv, features = 0.0, 0
    for channels, k in zip(cnn.channels, cnn.kernel_sizes):
        out = N - k + 1
        conv += 2.0 * channels * out * out * T * k * k
        features += channels * (out // cnn.pool) ** 2
    return (2 * conv + 3 * 2.0 * features * n_classes) / 1e9


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """The machine's float32 matrix-multiply rate with torch's own threads: the peak to compare with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times)) / 1e9


def fold_probabilities(model: CNNClassifier, X: np.ndarray, y: np.ndarray, fold) -> np.ndarray:
    """One fold's held-out class probabilities."""
    return model.fit(X[fold.train], y[fold.train]).predict_proba(X[fold.test])


def cross_validation_seconds(model: CNNClassifier, X, y, folds, processes: int) -> tuple[float, list[np.ndarray]]:
    """Wall time of fitting every fold, one after the other (0 processes) or in a process pool."""
    start = time.perf_counter()
    if processes:
        with process_pool(len(folds), processes) as pool:
            probs = list(pool.map(fold_probabilities, [model] * len(folds), [X] * len(folds), [y] * len(folds), folds))
    else:
        probs = [fold_probabilities(model, X, y, fold) for fold in folds]
    return time.perf_counter() - start, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stacks", default=None, help="stacks.npz [default: data.stacks of params]")
    parser.add_argument("--paper", action="store_true", help="also time the paper's 72 x 30 x 30 input")
    args = parser.parse_args()
    params = load_params(args.params)
    stacks = Stacks.load(args.stacks or params.data.stacks)
    folds = leave_one_cage_out(stacks.cage)
    train = folds[0].train
    report = {"threads": torch.get_num_threads(), "n_train": len(train), "cnn": params.cnn.model_dump()}

    report["matmul_gflops"] = matmul_gflops()
    shape = stacks.X.shape[1:]
    inputs = {"x".join(map(str, shape)): stacks.X[train]}
    if args.paper:
        rng = np.random.default_rng(0)
        inputs["72x30x30"] = rng.poisson(0.05, size=(len(train), 72, *shape[1:])).astype(np.float32)
    for name, X in inputs.items():
        seconds = epoch_seconds(X, stacks.y[train], CNNClassifier.from_params(params.cnn, len(stacks.classes)))
        report[f"epoch_s_{name}"] = seconds
        report[f"recording_epochs_per_s_{name}"] = len(X) / seconds
        gflops = training_gflop(X.shape[1], X.shape[2], params.cnn) * len(X) / seconds
        report[f"gflops_{name}"] = gflops
        report[f"share_of_matmul_peak_{name}"] = gflops / report["matmul_gflops"]

    start = time.perf_counter()
    result = FoldedModel(
        CNNClassifier.from_params(params.cnn, len(stacks.classes)), stacks.X, len(stacks.classes)
    ).cross_validate(stacks.y, folds)
    report["loco_cv_s"] = time.perf_counter() - start
    report["loco_folds"] = len(folds)
    report["loco_accuracy"] = result.accuracy

    cores, cnn = available_cores(), CNNClassifier.from_params(params.cnn, len(stacks.classes))
    ways = {
        f"one after the other, {cores} threads": (clone(cnn).set_params(threads=cores), 0),
        "one after the other, 1 thread": (clone(cnn).set_params(threads=1), 0),
        f"together, {cores} processes x 1 thread": (clone(cnn).set_params(threads=1), cores),
    }
    timings = {}
    for name, (model, processes) in ways.items():
        seconds, probs = cross_validation_seconds(model, stacks.X, stacks.y, folds, processes)
        timings[name] = {"s": seconds, "probs": probs}
        report[f"loco_cv_s, {name}"] = seconds
    one, together = timings["one after the other, 1 thread"], timings[f"together, {cores} processes x 1 thread"]
    report["together: identical probabilities to 1 thread"] = all(
        np.array_equal(a, b) for a, b in zip(one["probs"], together["probs"])
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
