"""stops: every stop of every identified mouse of the cohort, and the cohort's sample table.

Reads the raw folder (the manifest and its LMT databases, read-only) and nothing after
this stage does: it writes one table of stops per recording (``data.stops``) and the
resolved sample table (``data.samples``): one row per mouse-recording with its animal
(ANIMAL.ID and RFID), cage, labels (sex, age, genotype ... filled from ANIMAL), and its
recording's identity and clock (the time of day of its first frame, seconds per clock hour),
so that a corrected ANIMAL.SEX or a new recording reruns this stage and everything after it.
"""

from __future__ import annotations

import logging

from lmt_stereotype.config import Params
from lmt_stereotype.files import write_table
from lmt_stereotype.manifest import cohort_samples
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
        samples = cohort_samples(manifest, summary, params.lmt, params.room.timezone)
        write_table(samples, params.data.samples)
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
