"""tune: run the Optuna studies ``train`` needs, with local workers sharing the ``tuning.storage`` studies.

One study per outer cage fold of each tuned scheme and one for the final model. Started
on several machines with one PostgreSQL ``tuning.storage``, they share every study;
``train`` afterwards only reads the finished studies. Not a ``dvc.yaml`` stage: ``train``
runs the same studies itself when nobody ran them before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.files import write_table
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.stages._cross_validation import check_design
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import stage_run
from lmt_stereotype.tuning_workers import run_workers

log = logging.getLogger("lmt_stereotype")


def run(params: Params, params_file: Path, workers: int = 1) -> pd.DataFrame:
    """Run every study to ``tuning.n_trials`` finished trials with ``workers`` processes; one row per study."""
    if not params.tuning.enabled:
        raise InputError(params_file, "tuning.mode is off: there is nothing to tune")
    check_design(params, Stacks.load(params.data.stacks), params_file)
    with stage_run("tune", params, ("cnn", "tuning")) as run:
        studies = pd.DataFrame(run_workers(params, workers, progress=show_progress()))
        run.log_metrics({"n_studies": len(studies), "n_trials": int(studies["n_finished"].sum()), "workers": workers})
        table = params.data.reports / "tuning_studies.csv"
        write_table(studies, table)
        run.log_artifact(table)
    log.info(
        "tune: %d studies, %d finished trials, %d workers -> %s",
        len(studies),
        studies["n_finished"].sum(),
        workers,
        params.tuning.storage,
    )
    return studies
