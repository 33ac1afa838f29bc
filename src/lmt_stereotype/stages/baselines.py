"""baselines: the paper's PCA + 1-nearest-neighbour and PCA + SVM, cross-validated on the CNN's folds.

Writes ``reports/knn.json``, ``reports/svm.json`` and their folders, with the same metric
names as the CNN, so that MLflow and ``dvc metrics show`` put the three side by side.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lmt_stereotype.config import Params
from lmt_stereotype.evaluation import Evaluation, evaluate
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import make_baseline
from lmt_stereotype.stages._cross_validation import check_design, cross_validate_models
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import stage_run

BASELINES = ("knn", "svm")


def run(params: Params, params_file: Path) -> dict[str, dict[str, Evaluation]]:
    """Each baseline under each scheme; returns their Evaluations."""
    stacks = Stacks.load(params.data.stacks)
    check_design(params, stacks, params_file, tuned=False)
    models = {}
    for kind in BASELINES:
        make = partial(make_baseline, kind, params.baselines)
        cross_validate = partial(
            evaluate,
            kind,
            make,
            params=params.evaluation,
            n_permutations=params.baselines.n_permutations,
            progress=show_progress(),
            tags={"tuning": "off"},
        )
        models[kind] = (cross_validate, ("baselines",))
    with stage_run("baselines", params) as stage:
        return cross_validate_models(stage, params, stacks, models)
