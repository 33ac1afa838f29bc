"""predict: classify every identified mouse of new recordings with a registered model.

The recipe: (1) load the model (default: the champion of the target's registered model);
(2) gather the recordings (files, folders, a manifest); (3) for each, find its stops and
build its stacks with the stops and histograms parameters stored in the model, not
today's ``params.yaml``, which says only where MLflow is, the registered name, the camera
geometry (``lmt``) of the recordings and the time zone of their clock (``room``);
(4) predict; (5) write one table for all and log an MLflow run naming the model version,
the inputs' identities and the table.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd

from lmt_stereotype.config import Params
from lmt_stereotype.files import write_table
from lmt_stereotype.predict import load_model, predict_recordings, prediction_inputs
from lmt_stereotype.registry import model_version
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import stage_run

log = logging.getLogger("lmt_stereotype")


def run(params: Params, inputs: list[Path], model: str | None = None, out: Path | None = None) -> pd.DataFrame:
    """The per-mouse table of every recording ``inputs`` name, also to ``out`` (.csv or .parquet)."""
    recordings = prediction_inputs(inputs)
    with stage_run("predict", params) as run:
        uri = model or f"models:/{params.registry_of_target.model_name}@champion"
        loaded, trained = load_model(uri)
        version = model_version(uri)
        run.set_tags({"model_uri": uri, "target": loaded.metadata.metadata.get("target", "")})
        if version is not None:
            run.set_tags({"registered_model": version[0], "registered_version": version[1]})
        table, identities = predict_recordings(
            recordings, loaded, trained.model_copy(update={"lmt": params.lmt}), params.room.timezone, show_progress()
        )
        run.log_metrics({"n_recordings": len(recordings), "n_animals": len(table)})
        with tempfile.TemporaryDirectory() as tmp:
            write_table(identities, Path(tmp) / "inputs.csv")
            write_table(table, Path(tmp) / "predictions.csv")
            run.log_artifacts(tmp)
    if out is not None:
        write_table(table, out)
        log.info("predict: %d animals of %d recordings -> %s", len(table), len(recordings), out)
    return table
