"""Benchmark: tuning throughput, trials per minute of one nested Optuna study.

Not a test: it measures. Run on an idle machine, from the project root, after `make run`:

    .venv/bin/python benchmarks/tuning.py --trials 4 20 --pruner none halving --json tuning.json
    PYTHONPATH=<old checkout>/src .venv/bin/python benchmarks/tuning.py --params <old checkout>/params.yaml \
        --trials 4 --label before
    .venv/bin/python benchmarks/tuning.py --trials 20 --pruner halving --folds 12   # every outer fold's study
    .venv/bin/python benchmarks/tuning.py --trials 20 --pruner halving --start 3     # the fourth fold's alone

Each run is one study as ``train`` runs it: the first outer fold of the balanced scheme, or
each of the first ``--folds`` (its training cages, ``tuning.inner_folds`` inner folds), the
``tuning`` section's space and sampler, ``cnn.threads`` 1, a fresh SQLite storage, in one
process whose one-off imports are done before the first timing (so the first study pays
no more than the last). Printed per run: the wall time, trials per minute, the epochs the
trials trained (all of them, and per trial), the pruned trials and the best inner accuracy.
``--pruner`` (and ``--min-epochs``, ``--reduction-factor``) is left out with code that
predates it (the "before" run, whose pruner was a median rule applied fold by fold).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lmt_stereotype.config import load_params
from lmt_stereotype.evaluation import make_folds
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.tuning import tune


def one_study(stacks: Stacks, params, n_trials: int, pruner: str | None, halving: dict, index: int = 0) -> dict:
    fold = make_folds("balanced", stacks.cage, params.evaluation, stacks.target, stacks.y)[index]
    update = {"n_trials": n_trials} | ({"pruner": pruner, **halving} if pruner else {})
    tuning = params.tuning.model_copy(update=update)
    cnn = params.cnn.model_copy(update={"threads": 1})
    i = fold.train
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = tune(
            stacks.X[i], stacks.y[i], stacks.cage[i], stacks.target, cnn, tuning, f"sqlite:///{tmp}/o.db", "bench"
        )
        seconds = time.perf_counter() - start
    trials = study.trials
    planned = [t.params["epochs"] for t in trials]
    trained = [t.user_attrs.get("epochs_trained", t.params["epochs"]) for t in trials]
    return {
        "fold": fold.name,
        "trials": len(trials),
        "pruner": pruner or "before (median, per fold)",
        "halving": halving if pruner == "halving" else None,
        "seconds": round(seconds, 1),
        "trials_per_minute": round(60 * len(trials) / seconds, 2),
        "epochs_planned": int(sum(planned)),
        "epochs_trained": int(sum(trained)),
        "epochs_trained_per_trial": trained,
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "best_inner_accuracy": round(study.best_value, 4),
        "best_params": study.best_trial.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stacks", type=Path, default=Path("data/processed/stacks.npz"))
    parser.add_argument("--trials", type=int, nargs="+", default=[4, 20])
    parser.add_argument("--pruner", nargs="+", default=[None], help="none | halving (omit with older code)")
    parser.add_argument("--min-epochs", type=int, help="halving's first rung [default: tuning.min_epochs]")
    parser.add_argument("--reduction-factor", type=int, help="[default: tuning.reduction_factor]")
    parser.add_argument("--folds", type=int, default=1, help="one study per balanced outer fold, N of them")
    parser.add_argument("--start", type=int, default=0, help="the first of those folds (0: the first)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    stacks = Stacks.load(args.stacks)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # torch's one-off import (1.5-2 s), outside every timing
    halving = {k: v for k, v in (("min_epochs", args.min_epochs), ("reduction_factor", args.reduction_factor)) if v}
    results = []
    for pruner in args.pruner:
        for n in args.trials:
            for fold in range(args.start, args.start + args.folds):
                result = {"label": args.label, **one_study(stacks, params, n, pruner, halving, fold)}
                results.append(result)
                _show(args.label, result, halving, n)
    if args.folds > 1:
        seconds, trials = sum(r["seconds"] for r in results), sum(r["trials"] for r in results)
        print(
            f"{args.label}: {trials} trials in {seconds:.1f} s, {60 * trials / seconds:.2f} trials/min over all folds"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _show(label: str, result: dict, halving: dict, n: int) -> None:
    print(
        f"{label} {result['fold']} {result['pruner']:>26} {halving or ''} {n:3d} trials: {result['seconds']:7.1f} s, "
        f"{result['trials_per_minute']:5.2f} trials/min, {result['epochs_trained']} of "
        f"{result['epochs_planned']} epochs, {result['pruned']} pruned, "
        f"best inner {result['best_inner_accuracy']:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
