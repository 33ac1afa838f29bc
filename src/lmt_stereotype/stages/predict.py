"""predict: classify every identified mouse of a recording with a registered model.

Stops and stacks are computed with the stops and histograms parameters stored in the
model, not today's ``params.yaml``, which says only where MLflow is, the registered name,
the camera geometry (``lmt``) of the recording and the time zone of its clock (``room``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lmt_stereotype.config import Params
from lmt_stereotype.files import write_table
from lmt_stereotype.predict import predict_recording
from lmt_stereotype.tracking import use_tracking

log = logging.getLogger("lmt_stereotype")


def run(params: Params, db: Path, model: str | None = None, out: Path | None = None) -> pd.DataFrame:
    """The per-mouse table of ``db`` (default model: the champion of the target's registered model), also to ``out``."""
    use_tracking(params.mlflow)
    default = f"models:/{params.registry_of_target.model_name}@champion"
    table = predict_recording(db, model or default, params.lmt, params.room.timezone)
    if out is not None:
        write_table(table, out)
        log.info("predict: %d animals -> %s", len(table), out)
    return table
