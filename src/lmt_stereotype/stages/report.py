"""report: the results page a lab reads, ``reports/report/index.html``, one self-contained file.

The question (the target) and the cohort, how the design made the folds and the
permutations, CNN vs 1-NN vs SVM (accuracy with intervals, balanced accuracy, accuracy
within each level of the other grouping columns, ROC AUC for two classes, permutation
p-value, chance), the confusion matrices (beside the paper's Table 1 when the target is
its four classes), the activation maps and the time importance; their PNGs sit next to
it. Built from the other stages' reports only, and logged to MLflow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lmt_stereotype.config import Params
from lmt_stereotype.files import atomic_dir
from lmt_stereotype.report import write_report
from lmt_stereotype.tracking import provenance_tags, stage_run

log = logging.getLogger("lmt_stereotype")


def run(params: Params) -> Path:
    """Write the page; returns its path."""
    folder = params.data.reports / "report"
    provenance = provenance_tags(params)
    with stage_run("report", params) as run:
        with atomic_dir(folder) as out:
            write_report(params, out, provenance)
        run.log_artifacts(folder, "report")
    log.info("report: %s (open it in a browser)", folder / "index.html")
    return folder / "index.html"
