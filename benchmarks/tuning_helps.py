"""Benchmark: does nested tuning help? The tuned CNN against the fixed setting, balanced scheme.

Not a test: it measures. Run on an idle machine, from the project root, after `make run`:

    .venv/bin/python benchmarks/tuning_helps.py --cohorts demo coarse15 --trials 20 --json helps.json

For each cohort, the CNN's balanced-scheme cross-validation twice on the same folds: with
the ``cnn`` section's fixed setting (the paper's), and tuned by Optuna inside each outer
fold (``tuning`` section, ``--trials`` per study; the studies in one process per core, as
``train`` runs them, in a fresh SQLite storage). Cohorts are stacks of the demo's stops:
``demo`` (params.yaml's 12 x 180 s intervals, 30 x 30 tiles), ``coarse15`` (15 x 15 tiles
of 3.3 cm: the paper's 9 x 9 kernel then spans most of the cage) and ``sparse72`` (72 x 30 s:
the same stops cut six times finer in time, where the paper's setting learns little,
README; six times the cost). Prints
accuracy with its 95% cage-bootstrap interval, the females' and males' accuracy, how many
outer folds picked the fixed setting, and the wall times.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

from lmt_stereotype.config import load_params
from lmt_stereotype.evaluation import evaluate
from lmt_stereotype.histograms import Stacks, build_cohort_stacks
from lmt_stereotype.models import CNNClassifier
from lmt_stereotype.tuning import evaluate_tuned, fixed_trial_params
from lmt_stereotype.tuning_workers import run_studies

COHORTS = {"demo": {}, "coarse15": {"grid": 15}, "sparse72": {"n_intervals": 72, "interval_s": 30}}


def summary(metrics: dict) -> dict:
    keys = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_female", "accuracy_male", "chance_level")
    return {k: round(metrics[k], 4) for k in keys if k in metrics}


def compare(name: str, params, trials: int, tmp: Path) -> dict:
    histograms = params.histograms.model_copy(update=COHORTS[name])
    data = params.data.model_copy(update={"stacks": tmp / f"{name}.npz"})
    tuning = params.tuning.model_copy(update={"n_trials": trials, "storage": f"sqlite:///{tmp}/{name}.db"})
    params = params.model_copy(update={"histograms": histograms, "data": data, "tuning": tuning})
    build_cohort_stacks(data.samples, data.stops, data.stacks, params.lmt, histograms, params.target, data.manifest)
    stacks = Stacks.load(data.stacks)
    start = time.perf_counter()
    make = partial(CNNClassifier.from_params, params.cnn, len(stacks.classes))
    fixed = evaluate("cnn", make, stacks, "balanced", params.evaluation, 0)
    fixed_s = time.perf_counter() - start
    start = time.perf_counter()
    run_studies(params)
    tuned = evaluate_tuned(stacks, "balanced", params)
    tuned_s = time.perf_counter() - start
    paper = fixed_trial_params(params.cnn)
    picks = [
        max((t for t in trials_ if t["state"] == "COMPLETE"), key=lambda t: t["value"])
        for trials_ in tuned.trials.values()
    ]
    return {
        "cohort": name,
        "trials": trials,
        "fixed": summary(fixed.metrics),
        "tuned": summary(tuned.metrics),
        "folds_picking_the_fixed_setting": sum(p["params"] == paper for p in picks),
        "folds": len(picks),
        "seconds": {"fixed": round(fixed_s, 1), "tuned": round(tuned_s, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS), choices=list(COHORTS))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cohorts:
            r = compare(name, params, args.trials, Path(tmp))
            results.append(r)
            for kind in ("fixed", "tuned"):
                m = r[kind]
                interval = f"[{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}]"
                sexes = f"females {m.get('accuracy_female', 'nan')} males {m.get('accuracy_male', 'nan')}"
                print(f"{name} {kind}: {m['accuracy']:.3f} {interval} {sexes} ({r['seconds'][kind]} s)", flush=True)
            print(f"{name}: {r['folds_picking_the_fixed_setting']} of {r['folds']} folds picked the fixed setting")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
