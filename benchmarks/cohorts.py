"""Benchmark: every model under every scheme on simulated cohorts unlike the demo, through the CLI.

Not a test: it measures. Run from the project root (each cohort is simulated into its own
folder under --work, then `preprocess`, `train` and `baselines` run there on the project's
params.yaml with the cohort's changes):

    .venv/bin/python benchmarks/cohorts.py [--cohorts demo null8 effect8] [--work /tmp/cohorts] [--json out.json]

Cohorts: ``demo`` (the default 12 cages), ``null8`` (8 cages, every class effect off, strong
cage fingerprints: nothing to learn but the cage), ``effect8`` (8 cages with the demo's
effects), ``weak8`` (8 cages, effects at half strength). ``--root`` runs another checkout's
code and params.yaml instead (its ``src`` first on the path): the way the "before" figures
of a change are measured on the same cohorts. Prints, per model and scheme, accuracy with
its cage-bootstrap interval, the permutation p-value, the below-chance p-value (where the
code has one), sex accuracy, and the train stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

COHORTS = {
    "demo": {"simulate": {}, "effects": {}},
    "null8": {
        "simulate": {"n_cages": 8, "seed": 2, "cage_variability": 1.5, "mouse_variability": 0.1},
        "effects": {"strength": 0.0},
    },
    "effect8": {"simulate": {"n_cages": 8, "seed": 1}, "effects": {}},
    "weak8": {"simulate": {"n_cages": 8, "seed": 3}, "effects": {"strength": 0.5}},
}


def run(args: list[str], cwd: Path, root: Path) -> float:
    """One CLI command of the code under ``root``; returns its wall time."""
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "src"),
        "CI": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    start = time.perf_counter()
    code = "import sys; from lmt_stereotype.cli import main; sys.argv = ['lmt-stereotype', *sys.argv[1:]]; main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def cohort(name: str, root: Path, work: Path) -> dict:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["simulate"].update(COHORTS[name]["simulate"])
    raw["simulate"]["effects"].update(COHORTS[name]["effects"])
    raw["tuning"]["storage"] = f"sqlite:///{folder / 'optuna.db'}"
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    run(["simulate"], folder, root)
    run(["preprocess"], folder, root)
    seconds = {"train": run(["train"], folder, root), "baselines": run(["baselines"], folder, root)}
    results = {m: json.loads((folder / "reports" / f"{m}.json").read_text()) for m in ("cnn", "knn", "svm")}
    record = folder / "reports/registered_model.json"
    if not record.exists():  # a checkout from before the stages layer (--root) wrote it here
        record = folder / "reports/cnn/final.json"
    final = json.loads(record.read_text())
    return {"seconds": seconds, "results": results, "registered": final}


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", default=["demo", "null8", "effect8"], choices=sorted(COHORTS))
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="checkout whose code and params.yaml to run")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmt-cohorts"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = {}
    for name in args.cohorts:
        out[name] = result = cohort(name, args.root.resolve(), args.work)
        print(
            f"\n{name}: train {result['seconds']['train']:.0f} s, baselines {result['seconds']['baselines']:.0f} s; "
            f"registered version {result['registered']['version']} as {result['registered']['alias']} "
            f"({result['registered'].get('reason', '')})"
        )
        print(f"{'model':5} {'scheme':9} {'acc':>6} {'interval':>15} {'p':>6} {'below p':>8} {'sex':>6}")
        for model, schemes in result["results"].items():
            for scheme, m in schemes.items():
                interval = f"[{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}]"
                print(
                    f"{model:5} {scheme:9} {m['accuracy']:6.3f} {interval:>15} {_fmt(m['permutation_p_value']):>6} "
                    f"{_fmt(m.get('below_chance_p')):>8} {m['accuracy_sex']:6.3f}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
