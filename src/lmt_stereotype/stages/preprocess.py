"""preprocess: ``stops`` then ``histograms``, as one MLflow run with a nested run for each.

A convenience for MLflow users (``mlflow run . -e preprocess``); ``dvc.yaml`` runs the two as
its own stages instead, so that a change reruns only the one it affects.
"""

from __future__ import annotations

from lmt_stereotype.config import Params
from lmt_stereotype.stages import histograms, stops
from lmt_stereotype.tracking import stage_run


def run(params: Params, workers: int = 0) -> dict[str, float]:
    """Both stages; returns the cohort's counts."""
    with stage_run("preprocess", params):
        stops.run(params, workers)
        return histograms.run(params)
