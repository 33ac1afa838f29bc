"""Benchmark: cheaper ways to train the CNN's convolutions, against what `fit` does today.

Not a test: it measures. Run from the project root after `make run` (it reads the demo's
stacks, log1p-transformed, one thread, as a tuning trial trains):

    .venv/bin/python benchmarks/first_layer.py [--repeats 50] [--json first_layer.json]

Three levers of issue 19 (benchmarks/README.md §8), each timed beside its baseline in the
same run:

- **sparse** (kept: ``cnn.convolution``): a fit's epochs with the first layer as sparse
  im2col patches times the weights (:func:`~lmt_stereotype.models.sparse_patches`) against
  oneDNN's dense convolution, on the demo's stacks and on uniform random stacks of rising
  density (the crossover behind ``SPARSE_BELOW``);
- **grouped** (dropped): one SGD step of the three inner folds' networks as one grouped convolution
  (``groups=3``) and one batched matmul, against three separate networks;
- **bf16** (dropped): an epoch under bfloat16 autocast against float32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier, StopCNN, patch_share, sparse_patches

BATCH, FOLDS, WIDTH, KERNEL, CLASSES = 8, 3, 16, 9, 4
UNIFORM = (0.01, 0.02, 0.03, 0.05, 0.1)


def ms(step, repeats: int) -> float:
    """Milliseconds per call of ``step``, after 3 untimed calls."""
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return round((time.perf_counter() - start) / repeats * 1000, 2)


def sparse_epochs(X: np.ndarray, y: np.ndarray, epochs: int, repeats: int) -> list[dict]:
    """Milliseconds per epoch of a fit (log1p, batch 8) with the dense and the sparse first
    layer, the patches built beforehand (as a tuning study does; their time apart): on the
    demo stacks, and on uniform random stacks of the same shape at rising density, where the
    crossover lies. The fastest of ``repeats`` fits."""
    rng = np.random.default_rng(0)
    cases = [("demo", X)] + [
        (f"uniform {d}", (rng.random(X.shape) < d) * rng.poisson(2, X.shape).clip(1)) for d in UNIFORM
    ]
    rows = []
    for name, stacks in cases:
        inputs = torch.from_numpy(np.log1p(stacks).astype(np.float32))
        row = {"stacks": name, "patch_share": round(patch_share(inputs, (3, KERNEL), (WIDTH, WIDTH)), 4)}
        start = time.perf_counter()
        patches = sparse_patches(inputs, (3, KERNEL))
        row["patches_ms"] = round((time.perf_counter() - start) * 1000, 1)
        for convolution in ("dense", "sparse"):
            model = CNNClassifier(epochs=epochs, threads=1, convolution=convolution, n_classes=CLASSES)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                with model.torch_threads():
                    for _ in model.fit_epochs(stacks, y, patches):
                        pass
                seconds.append(time.perf_counter() - start)
            row[f"{convolution}_ms_per_epoch"] = round(min(seconds) / epochs * 1000, 1)
        row["speedup"] = round(row["dense_ms_per_epoch"] / row["sparse_ms_per_epoch"], 2)
        rows.append(row)
        print(row, flush=True)
    return rows


class GroupedFolds(nn.Module):
    """FOLDS copies of the paper's two branches as grouped convolutions, one classifier each."""

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(FOLDS * channels, FOLDS * WIDTH, k, groups=FOLDS) for k in (3, KERNEL))
        features = sum(WIDTH * ((grid - k + 1) // 2) ** 2 for k in (3, KERNEL))
        self.classifier = nn.Parameter(torch.randn(FOLDS, features, CLASSES) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        per_fold = [
            F.max_pool2d(torch.relu(branch(x)), 2).view(n, FOLDS, WIDTH, -1).transpose(0, 1).reshape(FOLDS, n, -1)
            for branch in self.branches
        ]
        return torch.bmm(torch.cat(per_fold, dim=2), self.classifier)


def grouped_folds(x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    """One SGD step of three folds' networks: separately, and as one grouped network."""
    _, channels, grid, _ = x.shape
    batches = [x[f * BATCH : (f + 1) * BATCH].contiguous(memory_format=torch.channels_last) for f in range(FOLDS)]
    labels = [y[f * BATCH : (f + 1) * BATCH] for f in range(FOLDS)]
    nets = [StopCNN(channels, grid, CLASSES).to(memory_format=torch.channels_last) for _ in range(FOLDS)]
    optimisers = [torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9) for net in nets]

    def separate():
        for net, optimiser, batch, label in zip(nets, optimisers, batches, labels):
            optimiser.zero_grad()
            F.cross_entropy(net(batch), label).backward()
            optimiser.step()

    grouped_net = GroupedFolds(channels, grid).to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(grouped_net.parameters(), lr=1e-3, momentum=0.9)
    stacked = torch.cat(batches, dim=1).contiguous(memory_format=torch.channels_last)
    stacked_labels = torch.cat(labels)

    def grouped():
        optimiser.zero_grad()
        F.cross_entropy(grouped_net(stacked).reshape(FOLDS * BATCH, CLASSES), stacked_labels).backward()
        optimiser.step()

    return {"three_networks_ms": ms(separate, repeats), "grouped_ms": ms(grouped, repeats)}


def bf16_epochs(x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    """An epoch over ``x`` in batches of 8, in float32 and under bfloat16 autocast."""
    _, channels, grid, _ = x.shape
    inputs = x.contiguous(memory_format=torch.channels_last)

    def epoch(autocast: bool):
        torch.manual_seed(0)
        net = StopCNN(channels, grid, CLASSES).to(memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

        def step():
            for batch in torch.randperm(len(y)).split(BATCH):
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    loss = F.cross_entropy(net(inputs[batch]), y[batch])
                loss.backward()
                optimiser.step()

        return step

    epochs = max(repeats // 5, 3)
    return {"float32_ms": ms(epoch(False), epochs), "bf16_autocast_ms": ms(epoch(True), epochs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=Path, default=Path("data/processed/stacks.npz"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10, help="per fit in the sparse timings")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stacks = Stacks.load(args.stacks)
    x = torch.from_numpy(np.log1p(stacks.X).astype(np.float32))
    y = torch.as_tensor(stacks.y, dtype=torch.long)
    results = {
        "stacks": list(stacks.X.shape),
        "sparse": sparse_epochs(stacks.X[:53], stacks.y[:53], args.epochs, 3),
        "grouped": grouped_folds(x, y, args.repeats),
        "bf16": bf16_epochs(x[:53], y[:53], args.repeats),
    }
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
