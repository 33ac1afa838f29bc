"""stops: every stop of every identified mouse of the cohort, and the cohort's sample table.

Reads the raw folder (the manifest and its LMT databases, read-only) and nothing after
this stage does: it writes one table of stops per recording (``data.stops``) and the
resolved sample table (``data.samples``): one row per mouse-recording with its animal
(ANIMAL.ID and RFID), cage, labels (sex, age, genotype ... filled from ANIMAL), and the clock of its recording (the time
of day of its first frame, seconds per clock hour), so that a corrected ANIMAL.SEX or a
new recording reruns this stage and everything after it.
"""

from __future__ import annotations

import logging

from lmt_stereotype.clock import clock_hour, seconds_per_clock_hour
from lmt_stereotype.config import Params
from lmt_stereotype.files import write_table
from lmt_stereotype.manifest import read_manifest, resolve, sample_table
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.stops import detect_cohort_stops
from lmt_stereotype.tracking import stage_run

log = logging.getLogger("lmt_stereotype")


def run(params: Params, workers: int = 0) -> None:
    """Stops of every recording of the manifest, then the sample table; ``workers`` recordings at once (0: per core)."""
    manifest = params.data.manifest
    with stage_run("stops", params, ("lmt", "stops", "room")) as run:
        summary = detect_cohort_stops(
            manifest, params.data.stops, params.lmt, params.stops, progress=show_progress(), workers=workers
        )
        samples = resolve(read_manifest(manifest), manifest, params.lmt)
        start_ms = summary.set_index("recording_id")["start_ms"]
        samples["start_hour"] = [
            clock_hour(start_ms[r], params.room.timezone) if start_ms[r] == start_ms[r] else float("nan")
            for r in samples["recording_id"]
        ]
        samples["seconds_per_hour"] = seconds_per_clock_hour(params.data.raw)
        write_table(sample_table(samples), params.data.samples)
        run.log_metrics({"n_recordings": len(summary), "n_stops": int(summary["n_stops"].sum())})
        run.log_artifact(params.data.stops / "recordings.csv")
        run.log_artifact(params.data.samples)
    log.info(
        "stops: %d stops in %d recordings -> %s; %d mouse-recordings -> %s",
        summary["n_stops"].sum(),
        len(summary),
        params.data.stops,
        len(samples),
        params.data.samples,
    )
