"""External validation: a trained model scored on a labelled cohort it never saw.

Cross-validation inside one cohort is the paper's evidence; a model trained on one cohort
classifying another, recorded later or in another lab, without retraining, is the
stronger one. The new cohort goes through the pipeline's own stop detection and
histograms, with the parameters stored in the model (:func:`cohort_stacks`); a cohort
sharing a recording with the model's training set is refused (:func:`check_unseen`),
recordings compared by identity (:meth:`~lmt_stereotype.lmt.LMTDatabase.identity`: what
the tracker wrote first), not by file name, which a copy changes, nor by bytes, which
lmt-analysis changes when it adds its events; and the predictions are scored with the
metrics, under the names, of cross-validation (:func:`external_metrics`). Nothing is
refitted, so the permutation test permutes the new cohort's labels as its design
allows against the model's fixed predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from lmt_stereotype.config import EvaluationParams, StackParams, TargetParams
from lmt_stereotype.errors import InputError
from lmt_stereotype.evaluation import (
    binomial_interval,
    bootstrap_accuracy_interval,
    chance_level,
    classification_metrics,
    label_permutation_null,
    permutation_p_value,
    significance_threshold,
)
from lmt_stereotype.files import write_table
from lmt_stereotype.histograms import Stacks, build_cohort_stacks
from lmt_stereotype.lmt import LMTDatabase
from lmt_stereotype.manifest import cohort_samples, read_manifest
from lmt_stereotype.stops import detect_cohort_stops


def recording_identities(manifest_path: Path, params: StackParams) -> dict[str, str]:
    """Each recording of the manifest (as it names it) and its identity; reads a thousand detections of each."""
    manifest = read_manifest(manifest_path)
    identities = {}
    for recording in manifest["recording"].unique():
        with LMTDatabase(manifest_path.parent / recording, params.lmt) as db:
            identities[recording] = db.identity()
    return identities


def check_unseen(identities: dict[str, str], trained: set[str], manifest_path: Path) -> None:
    """Refuse a cohort with a recording among ``trained`` (the identities of the model's training recordings)."""
    seen = [recording for recording, identity in identities.items() if identity in trained]
    if seen:
        shown = ", ".join(seen[:3]) + (" ..." if len(seen) > 3 else "")
        raise InputError(
            manifest_path,
            f"{len(seen)} of its {len(identities)} recordings were used to train the model ({shown}): "
            "an external validation needs recordings the model never saw",
        )


def cohort_stacks(
    manifest_path: Path,
    folder: Path,
    params: StackParams,
    target: TargetParams,
    timezone: str,
    *,
    progress: bool = False,
    workers: int = 0,
) -> tuple[Stacks, dict[str, float]]:
    """The labelled stacks of a cohort made as the pipeline makes them, with the model's ``params``:
    its stops (``folder/stops``), sample table (``folder/samples.csv``) and stacks
    (``folder/stacks.npz``); and the counts ``histograms`` reports."""
    summary = detect_cohort_stops(
        manifest_path, folder / "stops", params.lmt, params.stops, progress=progress, workers=workers
    )
    write_table(cohort_samples(manifest_path, summary, params.lmt, timezone), folder / "samples.csv")
    counts = build_cohort_stacks(
        folder / "samples.csv",
        folder / "stops",
        folder / "stacks.npz",
        params.lmt,
        params.histograms,
        target,
        manifest_path,
    )
    return Stacks.load(folder / "stacks.npz"), counts


def _roc_auc(stacks: Stacks, proba: np.ndarray, params: EvaluationParams) -> dict[str, float]:
    """Two classes: ROC AUC of the model's scores over the cohort (one model, so one ranking), with a
    percentile interval over resampled cages."""
    y, score = stacks.y, proba[:, 1]
    if len(np.unique(y)) < 2:
        return {"roc_auc": np.nan, "roc_auc_ci_low": np.nan, "roc_auc_ci_high": np.nan}
    cages = np.unique(stacks.cage)
    members = [np.flatnonzero(stacks.cage == c) for c in cages]
    rng = np.random.default_rng(params.seed)
    aucs = []
    for _ in range(params.n_bootstrap):
        index = np.concatenate([members[k] for k in rng.integers(0, len(cages), len(cages))])
        if len(np.unique(y[index])) == 2:
            aucs.append(roc_auc_score(y[index] == 1, score[index]))
    tail = (1 - params.confidence) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail]) if aucs else (np.nan, np.nan)
    auc = float(roc_auc_score(y == 1, score))
    return {"roc_auc": auc, "roc_auc_ci_low": float(low), "roc_auc_ci_high": float(high)}


def external_metrics(
    stacks: Stacks, proba: np.ndarray, params: EvaluationParams
) -> tuple[dict[str, float], np.ndarray]:
    """The metrics of a model's class probabilities ``proba`` on a cohort's ``stacks``, named as in
    cross-validation (accuracy with its cage-bootstrap and exact binomial intervals, balanced
    accuracy, per-class recall, accuracy within each sex ..., chance, the significance threshold),
    and their permutation null: the same predictions against ``evaluation.chance_permutations``
    design permutations of the cohort's labels, which gives the p-values above and below chance."""
    y_true, y_pred, cages, target = stacks.y, proba.argmax(axis=1), stacks.cage, stacks.target
    n, hits = len(y_true), int(np.sum(y_true == y_pred))
    metrics = classification_metrics(y_true, y_pred, target, stacks.groups)
    metrics["accuracy_ci_low"], metrics["accuracy_ci_high"] = bootstrap_accuracy_interval(
        y_true == y_pred, cages, params.n_bootstrap, params.confidence, params.seed
    )
    metrics["accuracy_binomial_low"], metrics["accuracy_binomial_high"] = binomial_interval(hits, n, params.confidence)
    metrics["chance_level"] = chance = chance_level(y_true)
    metrics["significance_threshold"] = significance_threshold(n, chance, 1 - params.confidence)
    null = label_permutation_null(target, y_true, y_pred, cages, params.chance_permutations, params.seed)
    metrics["permutation_p_value"] = permutation_p_value(metrics["accuracy"], null)
    metrics["n_permutations"] = float(len(null))
    metrics["below_chance_p"] = float((1 + np.sum(null <= metrics["accuracy"] + 1e-12)) / (1 + len(null)))
    if len(target.classes) == 2:
        metrics.update(_roc_auc(stacks, proba, params))
    metrics["n_recordings"] = float(n)
    metrics["n_cages"] = float(len(np.unique(cages)))
    return metrics, null


def external_warning(metrics: dict[str, float], confidence: float) -> str | None:
    """The words every surface shows when a model scores significantly below chance on a new cohort."""
    p = metrics["below_chance_p"]
    if not p <= 1 - confidence:
        return None
    return (
        f"accuracy {metrics['accuracy']:.3f} is significantly below chance {metrics['chance_level']:.2f} "
        f"(p = {p:.3g}): the model's predictions run against this cohort's labels; look for what differs "
        "between the cohorts (set-up, clock, labelling) before reading it as evidence about the mice"
    )
