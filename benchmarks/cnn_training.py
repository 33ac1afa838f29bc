"""Benchmark: CNN training time per epoch and per leave-one-cage-out cross-validation.

Not a test: it measures. Run on an idle machine, from the project root:

    .venv/bin/python benchmarks/cnn_training.py [--stacks data/processed/stacks.npz] [--paper]

Prints seconds per epoch (training on 88 recordings: 11 of 12 cages) for the demo stacks
and, with ``--paper``, for the paper's 72 x 30 x 30 input (the demo recordings cut into
72 intervals of 30 s), then one full 12-fold cross-validation at the ``cnn`` parameters.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lmt_stereotype.config import load_params
from lmt_stereotype.evaluation import FoldedModel, leave_one_cage_out
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier


def epoch_seconds(X: np.ndarray, y: np.ndarray, model: CNNClassifier, epochs: int = 5) -> float:
    """Median wall time of one training epoch (after one warm-up epoch)."""
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        model.set_params(epochs=1).fit(X, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


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

    shape = stacks.X.shape[1:]
    report[f"epoch_s_{'x'.join(map(str, shape))}"] = epoch_seconds(
        stacks.X[train], stacks.y[train], CNNClassifier.from_params(params.cnn)
    )
    if args.paper:
        X72 = np.random.default_rng(0).poisson(0.05, size=(len(train), 72, *shape[1:])).astype(np.float32)
        report["epoch_s_72x30x30"] = epoch_seconds(X72, stacks.y[train], CNNClassifier.from_params(params.cnn))

    start = time.perf_counter()
    result = FoldedModel(CNNClassifier.from_params(params.cnn), stacks.X, folds).run(stacks.y)
    report["loco_cv_s"] = time.perf_counter() - start
    report["loco_folds"] = len(folds)
    report["loco_accuracy"] = result.accuracy
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
