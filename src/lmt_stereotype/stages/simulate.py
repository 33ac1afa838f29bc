"""simulate: write the synthetic cohort (LMT databases + manifest) into the raw folder.

Skips when the folder already holds the same simulation; refuses to overwrite a folder
of real recordings (one without ``simulation.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.simulation import PROFILES, write_simulated_cohort
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import stage_run

log = logging.getLogger("lmt_stereotype")


def run(
    params: Params,
    params_file: Path,
    out: Path | None = None,
    force: bool = False,
    *,
    seed: int | None = None,
    n_cages: int | None = None,
) -> bool:
    """Simulate into ``out`` (default ``data.raw``), with another ``seed`` or number of cages than
    ``simulate`` says if given; True when something was written."""
    overrides = {k: v for k, v in {"seed": seed, "n_cages": n_cages}.items() if v is not None}
    params = params.model_copy(update={"simulate": params.simulate.model_copy(update=overrides)})
    profile = PROFILES[params.simulate.profile]
    window_s = params.histograms.n_intervals * params.histograms.interval_s
    recording_s = profile.n_intervals * profile.interval_s
    if window_s != recording_s:
        raise InputError(
            params_file,
            f"histograms cover {params.histograms.n_intervals} x {params.histograms.interval_s:g} s but the "
            f"{params.simulate.profile} profile records {recording_s:g} s; n_intervals x interval_s must equal it",
        )
    out = out or params.data.raw
    with stage_run("simulate", params, ("simulate", "histograms", "room", "cage_layout")) as run:
        wrote = write_simulated_cohort(params, out, force=force, progress=show_progress())
        run.set_tags({"raw_dir": str(out), "written": str(wrote)})
    log.info("simulate: %s %s", "wrote" if wrote else "up to date, kept", out)
    return wrote
