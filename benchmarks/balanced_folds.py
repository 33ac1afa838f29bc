"""Benchmark: which form of the balanced scheme, by the spread of its accuracy and its cost.

Not a test: it measures. Run on an idle machine, from the project root, after `make run`:

    .venv/bin/python benchmarks/balanced_folds.py [--stacks data/processed/stacks.npz] [--seeds 5] [--json out.json]

The balanced scheme holds out one male and one female cage per fold. Its forms: disjoint
pairs over R matchings (R = 1, 2, 3; each matching a set of folds that tests every cage
once), or every male x female pair (leave-pair-out, R = the smaller sex's cage count).
Which pairs a matching makes depends on the seed, so for each R the whole
cross-validation is repeated over ``--seeds`` seeds: the standard deviation of its
accuracy across seeds is the variance the choice of pairs adds to the reported number
(leave-pair-out has none: it uses every pair). Cost: folds fitted, and seconds per
cross-validation (CNN: the ``cnn`` section's fixed setting, one thread per fit, fits in
one process per core). Leave-one-cage-out is shown beside them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lmt_stereotype.config import load_params
from lmt_stereotype.design import cage_strata
from lmt_stereotype.evaluation import (
    FoldedModel,
    balanced_cage_folds,
    classification_metrics,
    leave_one_cage_out,
)
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier, make_baseline
from lmt_stereotype.parallel import available_cores, process_pool


def cross_validate(make, stacks: Stacks, folds) -> tuple[dict[str, float], float]:
    """Metrics of one cross-validation and its wall time."""
    start = time.perf_counter()
    result = FoldedModel(make(), stacks.X, len(stacks.classes)).cross_validate(stacks.y, folds)
    seconds = time.perf_counter() - start
    return classification_metrics(stacks.y, result.y_pred, stacks.target, stacks.groups), seconds


def _job(model: str, params, stacks: Stacks, form: str, seed: int, folds) -> dict:
    if model == "cnn":

        def make():
            return CNNClassifier.from_params(params.cnn, len(stacks.classes)).set_params(threads=1)
    else:

        def make():
            return make_baseline(model, params.baselines)

    metrics, seconds = cross_validate(make, stacks, folds)
    return {"model": model, "form": form, "seed": seed, "folds": len(folds), "seconds": seconds, **metrics}


def forms(stacks: Stacks, seeds: int) -> list[tuple[str, int, list]]:
    """(form, seed, folds) of every cross-validation to run."""
    target, y = stacks.target, stacks.y
    n_pairs = min(len(cages) for cages in cage_strata(target, y, stacks.cage)[0].values())
    out = [("leave-one-cage-out", 0, leave_one_cage_out(stacks.cage))]
    for r in (1, 2, 3):
        out += [
            (f"pairs, {r} matching(s)", s, balanced_cage_folds(stacks.cage, target, y, None, r, s))
            for s in range(seeds)
        ]
    out.append(
        (f"leave-pair-out ({n_pairs} matchings)", 0, balanced_cage_folds(stacks.cage, target, y, None, n_pairs, 0))
    )
    return out


def summary(rows: list[dict]) -> list[dict]:
    table = []
    for (model, form), group in _groups(rows).items():
        acc = np.array([r["accuracy"] for r in group])
        table.append(
            {
                "model": model,
                "form": form,
                "folds": group[0]["folds"],
                "seeds": len(group),
                "accuracy_mean": float(acc.mean()),
                "accuracy_sd_over_seeds": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "accuracy_min": float(acc.min()),
                "accuracy_max": float(acc.max()),
                "accuracy_sex_mean": float(np.mean([r["accuracy_sex"] for r in group])),
                "seconds_per_cv": float(np.median([r["seconds"] for r in group])),
            }
        )
    return table


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["form"]), []).append(row)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stacks", default=None, help="stacks.npz [default: data.stacks of params]")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per number of matchings")
    parser.add_argument("--models", nargs="+", default=["knn", "svm", "cnn"])
    parser.add_argument("--json", default=None, help="also write every run and the summary here")
    args = parser.parse_args()
    params = load_params(args.params)
    stacks = Stacks.load(args.stacks or params.data.stacks)
    jobs = [(m, *form) for m in args.models for form in forms(stacks, args.seeds)]
    rows = [_job(m, params, stacks, form, seed, folds) for m, form, seed, folds in jobs if m != "cnn"]
    cnn_jobs = [job for job in jobs if job[0] == "cnn"]
    if cnn_jobs:
        with process_pool(len(cnn_jobs)) as pool:
            futures = [pool.submit(_job, m, params, stacks, form, seed, folds) for m, form, seed, folds in cnn_jobs]
            rows += [f.result() for f in futures]
    table = summary(rows)
    print(f"{len(stacks.y)} recordings, {len(np.unique(stacks.cage))} cages, {available_cores()} cores")
    print(f"{'model':5} {'form':34} {'folds':>5} {'seeds':>5} {'mean':>6} {'sd':>6} {'min':>6} {'max':>6} {'s/CV':>7}")
    for t in table:
        print(
            f"{t['model']:5} {t['form']:34} {t['folds']:5d} {t['seeds']:5d} {t['accuracy_mean']:6.3f} "
            f"{t['accuracy_sd_over_seeds']:6.3f} {t['accuracy_min']:6.3f} {t['accuracy_max']:6.3f} "
            f"{t['seconds_per_cv']:7.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": table, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
