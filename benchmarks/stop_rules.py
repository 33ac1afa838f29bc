"""Benchmark: how stops survive detection gaps, scored against the simulator's planted stops.

Not a test: it measures, to choose ``stops.max_gap_s`` and ``stops.max_gap_cm`` (issue 17).
Run from the project root after ``make run`` (it reads the demo cohort in ``data/raw``):

    .venv/bin/python benchmarks/stop_rules.py --demo 8 --paper-hours 6 --json stop_rules.json

Each rule runs our stop detector with other ``stops`` settings on

* ``--demo`` recordings of the demo cohort (36-min recordings, rests in the house compressed
  to a few seconds, as its 30-s "hours" compress the day), and
* one recording of the ``paper`` profile, ``--paper-hours`` long and written once into
  ``--work`` (real time: rests in the house of minutes, hidden in runs of seconds to minutes).

Rules: lmt-analysis's speed (a centred one-frame difference, undefined next to any missing
frame: ``speed_window_frames: 3, max_gap_s: 0``), the old rule as the new detector can say it
(every gap up to 15 frames bridged, wherever the mouse reappeared: ``max_gap_s: 0.5``, no
distance limit; the old code limited the missing frames per speed window, not per gap), and the new
one over a grid of ``max_gap_s`` and ``max_gap_cm``. Scores
(:func:`~lmt_stereotype.simulation.truth.score_stops`): recall of the planted stops (all, and
those the animal was seen in for at least 1 s), precision of the detected ones.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.config import StopParams, load_params
from lmt_stereotype.manifest import read_manifest
from lmt_stereotype.simulation import PROFILES, planted_stops, score_stops
from lmt_stereotype.simulation.behaviour import recording_frames
from lmt_stereotype.simulation.cohort import _plan_cohort, _write_planned
from lmt_stereotype.simulation.truth import StopScore
from lmt_stereotype.stops import recording_stops

ROOT = Path(__file__).resolve().parents[1]
NO_LIMIT_CM = 1e9


def rules(base: StopParams) -> dict[str, StopParams]:
    grid = {
        f"new: {s:g} s, {cm:g} cm": base.model_copy(update={"max_gap_s": s, "max_gap_cm": cm})
        for s in (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
        for cm in (1.0, 2.0, 4.0)
    }
    return {
        "lmt-analysis (no bridging)": base.model_copy(update={"speed_window_frames": 3, "max_gap_s": 0.0}),
        "old: 15 frames, anywhere": base.model_copy(update={"max_gap_s": 0.5, "max_gap_cm": NO_LIMIT_CM}),
        **grid,
    }


def paper_recording(work: Path, hours: int) -> tuple[Path, pd.DataFrame]:
    """A recording of the paper profile (written once), and its planted stops."""
    params = load_params(ROOT / "configs" / "paper.yaml")
    profile = replace(PROFILES["paper"], n_intervals=hours - 1)  # and one hour of margin
    plan = replace(_plan_cohort(params)[0][1], file=f"paper_{hours}h.sqlite")
    path = work / plan.file
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        _write_planned(plan, params, profile, work)
    assert recording_frames(profile, params) == hours * 3600 * 30
    return path, planted_stops(work, plan.file)


def score(recordings: list[tuple[Path, pd.DataFrame]], params: StopParams, fps: float) -> StopScore:
    geometry = load_params(ROOT / "params.yaml").lmt
    total = StopScore(0, 0, 0, 0, 0)
    for path, planted in recordings:
        detected, _ = recording_stops(path, geometry, params, threads=2)
        total = total + score_stops(detected, planted, fps)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=int, default=8, help="demo recordings scored (the first N of the manifest)")
    parser.add_argument("--paper-hours", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmt-stop-rules"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    manifest = read_manifest(params.data.manifest)
    demo = [
        (params.data.raw / r, planted_stops(params.data.raw, r)) for r in manifest["recording"].unique()[: args.demo]
    ]
    cohorts = {
        f"demo ({len(demo)} recordings)": demo,
        f"paper profile ({args.paper_hours} h)": [paper_recording(args.work, args.paper_hours)],
    }
    results = []
    for cohort, recordings in cohorts.items():
        planted = pd.concat([p for _, p in recordings])
        house = planted["site"] == "house"
        n = planted["end_frame"] - planted["start_frame"] + 1
        print(
            f"\n{cohort}: {len(planted)} planted stops, {house.mean():.0%} in the house, hidden"
            f" {1 - planted.loc[house, 'seen_frames'].sum() / n[house].sum():.0%} of their time there;"
            f" {np.mean(planted['seen_frames'] < params.lmt.fps):.1%} seen for less than 1 s"
        )
        print(f"{'rule':28s} {'detected':>9s} {'recall':>7s} {'seen':>7s} {'precision':>9s}")
        for name, rule in rules(params.stops).items():
            s = score(recordings, rule, params.lmt.fps)
            print(f"{name:28s} {s.n_detected:9d} {s.recall:7.3f} {s.recall_seen:7.3f} {s.precision:9.3f}")
            results.append(
                {"cohort": cohort, "rule": name, **rule.model_dump(), "n_planted": s.n_planted,
                 "n_detected": s.n_detected, "recall": s.recall, "recall_seen": s.recall_seen,
                 "precision": s.precision}
            )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
