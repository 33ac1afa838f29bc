"""Benchmark: cheaper ways to train the CNN's convolutions, against what `fit` does today.

Not a test: it measures. Run from the project root after `make run` (it reads the demo's
stacks, log1p-transformed, one thread, as a tuning trial trains):

    .venv/bin/python benchmarks/first_layer.py [--repeats 50] [--json first_layer.json]

Three levers of issue 19, none kept (benchmarks/README.md §8), each timed beside its baseline
in the same run:

- **sparse**: the 9 x 9 branch's convolution (forward and weight gradient, a batch of 8)
  over the non-zero cells only, as a sparse im2col matrix times the weights (COO and CSR)
  and as gather / index_add, against oneDNN's dense convolution;
- **grouped**: one SGD step of the three inner folds' networks as one grouped convolution
  (``groups=3``) and one batched matmul, against three separate networks;
- **bf16**: an epoch under bfloat16 autocast against float32.
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
from lmt_stereotype.models import StopCNN

BATCH, FOLDS, WIDTH, KERNEL, CLASSES = 8, 3, 16, 9, 4


def ms(step, repeats: int) -> float:
    """Milliseconds per call of ``step``, after 3 untimed calls."""
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return round((time.perf_counter() - start) / repeats * 1000, 2)


def sparse_first_layer(x: torch.Tensor, repeats: int) -> dict:
    """The 9 x 9 convolution, dense and over the non-zero cells of ``x`` (a batch of stacks)."""
    n, channels, grid, _ = x.shape
    out = grid - KERNEL + 1
    conv = nn.Conv2d(channels, WIDTH, KERNEL).to(memory_format=torch.channels_last)
    dense_x = x.contiguous(memory_format=torch.channels_last)

    def dense():
        conv.zero_grad()
        conv(dense_x).sum().backward()

    b, c, i, j = x.nonzero(as_tuple=True)
    value = x[b, c, i, j]
    di, dj = torch.arange(KERNEL).repeat_interleave(KERNEL), torch.arange(KERNEL).repeat(KERNEL)
    p, q = i[:, None] - di[None], j[:, None] - dj[None]
    inside = (p >= 0) & (p < out) & (q >= 0) & (q < out)
    rows = (b[:, None] * out * out + p * out + q)[inside]
    cols = (c[:, None] * KERNEL * KERNEL + di[None] * KERNEL + dj[None])[inside]
    values = value[:, None].expand_as(p)[inside]
    weight = nn.Parameter(torch.randn(WIDTH, channels * KERNEL * KERNEL) * 0.01)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n * out * out, weight.shape[1])).coalesce()
    csr = coo.to_sparse_csr()

    def gather():
        weight.grad = None
        contributions = weight.t().index_select(0, cols) * values[:, None]
        torch.zeros(n * out * out, WIDTH).index_add(0, rows, contributions).sum().backward()

    def product(matrix):
        def step():
            weight.grad = None
            (matrix @ weight.t()).sum().backward()

        return step

    return {
        "nonzero_share": round(float((x > 0).float().mean()), 4),
        "dense_ms": ms(dense, repeats),
        "sparse_coo_ms": ms(product(coo), repeats),
        "sparse_csr_ms": ms(product(csr), repeats),
        "gather_index_add_ms": ms(gather, repeats),
    }


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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stacks = Stacks.load(args.stacks)
    x = torch.from_numpy(np.log1p(stacks.X).astype(np.float32))
    y = torch.as_tensor(stacks.y, dtype=torch.long)
    results = {
        "stacks": list(stacks.X.shape),
        "sparse": sparse_first_layer(x[:BATCH], args.repeats),
        "grouped": grouped_folds(x, y, args.repeats),
        "bf16": bf16_epochs(x[:53], y[:53], args.repeats),
    }
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
