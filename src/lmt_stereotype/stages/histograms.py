"""histograms: the stacks of stop histograms (T intervals x N x N tiles) of every mouse-recording.

Reads only what ``stops`` wrote (the sample table and the stops), never the raw
recordings; labels every stack for ``target`` (the question asked: ``class``, ``sex``,
``genotype`` ...), so changing the target reruns this stage and everything after it;
writes ``data.stacks`` and the cohort's counts (``reports/histograms.json``).
"""

from __future__ import annotations

import logging

from lmt_stereotype.config import Params
from lmt_stereotype.files import write_json
from lmt_stereotype.histograms import build_cohort_stacks
from lmt_stereotype.tracking import stage_run

log = logging.getLogger("lmt_stereotype")


def run(params: Params) -> dict[str, float]:
    """Build and save the stacks; returns the cohort's counts."""
    h = params.histograms
    with stage_run("histograms", params, ("histograms", "target")) as run:
        counts = build_cohort_stacks(
            params.data.samples,
            params.data.stops,
            params.data.stacks,
            params.lmt,
            h,
            params.target,
            params.data.manifest,
        )
        report = params.data.reports / "histograms.json"
        write_json(counts, report)
        run.log_metrics(counts)
        run.log_artifact(report)
    log.info(
        "histograms: %d stacks of %dx%dx%d (%d stops) -> %s",
        counts["n_samples"],
        h.n_intervals,
        h.grid,
        h.grid,
        counts["n_stops_in_window"],
        params.data.stacks,
    )
    return counts
