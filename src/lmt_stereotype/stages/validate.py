"""validate: score a registered model on a labelled cohort recorded elsewhere, without retraining it.

The recipe: (1) load the model (default: the champion of the target's registered model)
and the identities of the recordings it was trained on; (2) refuse a cohort that shares
a recording with them; (3) find the cohort's stops and build its stacks with the stops
and histograms parameters stored in the model, for the model's own target and classes;
(4) predict; (5) score as cross-validation scores (the same metrics and names, chance,
intervals) with a permutation test of the cohort's labels at its exchangeable units; (6)
write the report folder (default ``reports/external/<name>``): ``metrics.json``,
``predictions.csv``, ``confusion.json`` and ``confusion.png`` beside the model's
cross-validated confusion, ``permutation_null.csv``, ``validation.json`` (which model, which
cohort, the warning when below chance) and the cohort's stops and stacks; (7) log an
MLflow run linked to the model version, and tag the version with its external result
(``external.<name>.accuracy`` ...).

``params.yaml`` gives only where MLflow is, the registered name, the camera geometry
(``lmt``) of the cohort's recordings, its room's time zone and the evaluation's
intervals and permutations (``evaluation``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lmt_stereotype.config import Params, TargetParams
from lmt_stereotype.errors import InputError
from lmt_stereotype.evaluation import confusion
from lmt_stereotype.figures import confusion_panels_figure
from lmt_stereotype.files import atomic_dir, write_json, write_table
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.predict import load_model
from lmt_stereotype.registry import cross_validated_confusion, model_version, tag_external, training_recordings
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import stage_run
from lmt_stereotype.validation import (
    check_unseen,
    cohort_stacks,
    external_metrics,
    external_warning,
    recording_identities,
)

log = logging.getLogger("lmt_stereotype")


def cohort_name(manifest: Path) -> str:
    """A cohort's default name: its manifest's folder, as a tag-safe word."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", manifest.resolve().parent.name) or "cohort"


def run(
    params: Params,
    manifest: Path,
    model: str | None = None,
    name: str | None = None,
    out: Path | None = None,
    workers: int = 0,
) -> dict[str, float]:
    """Validate, write the report folder, log and tag; returns the metrics."""
    name = name or cohort_name(manifest)
    out = out or params.data.reports / "external" / name
    uri = model or f"models:/{params.registry_of_target.model_name}@champion"
    with stage_run("validate", params) as run:
        loaded, trained = load_model(uri)
        trained = trained.model_copy(update={"lmt": params.lmt})
        seen = training_recordings(loaded)
        if not seen:
            raise InputError(uri, "its metadata does not name the recordings it was trained on: retrain it")
        check_unseen(recording_identities(manifest, trained), seen, manifest)
        meta = loaded.metadata.metadata
        target = TargetParams(column=meta["target"], classes=tuple(meta["classes"]), drop_missing=False)
        version = model_version(uri)
        run.set_tags({"model_uri": uri, "target": target.column, "external_cohort": name, "manifest": str(manifest)})
        with atomic_dir(out) as folder:
            stacks, counts = cohort_stacks(
                manifest, folder, trained, target, params.room.timezone, progress=show_progress(), workers=workers
            )
            predictions = loaded.predict(stacks.X)
            proba = predictions[[f"p_{c}" for c in stacks.classes]].to_numpy()
            metrics, null = external_metrics(stacks, proba, params.evaluation)
            about = {"cohort": name, "manifest": str(manifest), "model_uri": uri, "registered_model": None}
            if version is not None:
                about.update(registered_model=version[0], version=version[1])
            about["warning"] = warning = external_warning(metrics, params.evaluation.confidence)
            write_json(about, folder / "validation.json")
            _write_report(folder, stacks, predictions, metrics, null, version)
        run.log_metrics({**metrics, **{f"cohort.{k}": v for k, v in counts.items()}})
        run.log_artifacts(out, "external")
        if version is not None:
            run.set_tags({"registered_model": version[0], "registered_version": version[1]})
            tag_external(*version, name, metrics, run.run.info.run_id)
    log.info(
        "validate: %s on %s (%d recordings, %d cages): accuracy %.3f [%.3f, %.3f], balanced %.3f, chance %.2f, "
        "permutation p %.3g -> %s",
        uri,
        name,
        metrics["n_recordings"],
        metrics["n_cages"],
        metrics["accuracy"],
        metrics["accuracy_ci_low"],
        metrics["accuracy_ci_high"],
        metrics["balanced_accuracy"],
        metrics["chance_level"],
        metrics["permutation_p_value"],
        out,
    )
    if warning:
        log.warning("validate: %s", warning)
    return metrics


def _write_report(
    folder: Path,
    stacks: Stacks,
    predictions: pd.DataFrame,
    metrics: dict[str, float],
    null: np.ndarray,
    version: tuple[str, str] | None,
) -> None:
    """The report folder's files (besides the cohort's stops and stacks, written while it was made)."""
    counts = confusion(stacks.y, stacks.target.indices(predictions["predicted"]), len(stacks.classes))
    cross_validated = cross_validated_confusion(*version) if version is not None else None
    write_json(metrics, folder / "metrics.json")
    write_json(
        {
            "target": stacks.target_column,
            "classes": list(stacks.classes),
            "rows": "true",
            "columns": "predicted",
            "counts": counts,
            "cross_validated": cross_validated,
        },
        folder / "confusion.json",
    )
    panels = {"this cohort": counts}
    if cross_validated is not None:
        panels["the model's cross-validation"] = cross_validated
    confusion_panels_figure(panels, stacks.classes, folder / "confusion.png")
    table = pd.DataFrame(
        {"recording": stacks.recording, "animal_id": stacks.animal_id, "cage": stacks.cage, "true": stacks.label}
    )
    write_table(pd.concat([table, predictions.reset_index(drop=True)], axis=1), folder / "predictions.csv")
    write_table(pd.DataFrame({"accuracy": null}), folder / "permutation_null.csv")
