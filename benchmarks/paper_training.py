"""Benchmark: the paper-sized training (72 x 30 x 30 stacks, 12 cage folds) on the CPU and on a GPU.

Not a test: it measures. Run from the project root (no `make run` needed: the stacks are
random counts of the paper's size, 96 recordings in 12 cages of 8):

    .venv/bin/python benchmarks/paper_training.py [--epochs 40] [--folds 12] [--json paper_training.json]

Trains the ``cnn`` section's fixed setting on each leave-one-cage-out training set, fold
after fold, with torch's threads on the CPU and, when torch sees one, on the GPU (a first
fold is trained once untimed there: CUDA's start-up). Prints seconds per fold and for the
12 folds, and the largest difference between the CPU's and the GPU's held-out
probabilities (they are not bit-identical, README "Training on a GPU"), and whether two
GPU runs agree exactly.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lmt_stereotype.config import load_params
from lmt_stereotype.evaluation import leave_one_cage_out
from lmt_stereotype.models import CNNClassifier


def paper_cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.poisson(0.05, size=(96, 72, 30, 30)).astype(np.float32)
    return X, np.tile(np.arange(4), 24), np.repeat(np.arange(12), 8).astype(str)


def folds_on(device: str, model: CNNClassifier, X, y, folds) -> tuple[float, list[np.ndarray]]:
    model = model.set_params(device=device)
    start = time.perf_counter()
    probs = [model.fit(X[f.train], y[f.train]).predict_proba(X[f.test]) for f in folds]
    return time.perf_counter() - start, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--folds", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    X, y, cages = paper_cohort()
    folds = leave_one_cage_out(cages)[: args.folds]
    model = CNNClassifier.from_params(params.cnn, 4).set_params(epochs=args.epochs, threads=0)
    report = {"epochs": args.epochs, "folds": len(folds), "cpu_threads": torch.get_num_threads()}
    report["cpu_s"], cpu = folds_on("cpu", model, X, y, folds)
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
        folds_on("cuda", model.set_params(epochs=1), X, y, folds[:1])  # CUDA and cuDNN start-up
        model.set_params(epochs=args.epochs)
        report["gpu_s"], gpu = folds_on("cuda", model, X, y, folds)
        _, again = folds_on("cuda", model, X, y, folds)
        report["gpu_speedup"] = report["cpu_s"] / report["gpu_s"]
        report["max_abs_prob_diff_gpu_cpu"] = float(max(np.abs(a - b).max() for a, b in zip(gpu, cpu)))
        report["gpu_runs_identical"] = all(np.array_equal(a, b) for a, b in zip(gpu, again))
    for key in [k for k in report if k.endswith("_s")]:
        report[key.replace("_s", "_s_per_fold")] = report[key] / len(folds)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
