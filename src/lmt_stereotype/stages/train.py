"""train: cross-validate the paper's CNN per cage fold, fit the final model, register it, decide its alias.

The recipe: (1) with nested tuning, run the Optuna studies every outer fold needs, in
parallel processes; (2) cross-validate the CNN under each scheme of
``evaluation.schemes`` (balanced, the headline; loco, the paper's; kfold, the leak),
tuned inside each outer fold of ``tuning.schemes``, the ``cnn`` settings elsewhere;
(3) keep each cage's balanced-scheme held-out model for ``explain``; (4) fit the final
model on every recording (tuned on every cage when tuning is on); (5) log it and register
it as a new version of the target's registered model (``Params.registry_of_target``),
unless the very same model and evidence is registered already; (6) promote it:
``champion`` only when its balanced accuracy is significantly above chance and its
``registry.metric`` beats the current champion's, ``challenger`` otherwise, with the
reason in words.

Writes ``models/cnn/`` (held-out and final CNNs), ``reports/cnn.json`` and
``reports/cnn/<scheme>/`` (metrics, predictions, figures) and
``reports/registered_model.json`` (the version, its alias and why).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from lmt_stereotype.config import Params
from lmt_stereotype.evaluation import SCHEMES, Evaluation, above_chance, held_out_models
from lmt_stereotype.files import atomic_dir, write_json
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier, save_cnn
from lmt_stereotype.registry import (
    Registration,
    describe,
    fingerprint,
    log_model,
    promote,
    register,
    registered_already,
)
from lmt_stereotype.stages._cross_validation import check_design, cross_validate_models, log_trials
from lmt_stereotype.stages._terminal import show_progress
from lmt_stereotype.tracking import StageRun, flat_params, provenance_tags, stage_run
from lmt_stereotype.tuning import evaluate_cnn, fit_final, trial_records
from lmt_stereotype.tuning_workers import run_studies

log = logging.getLogger("lmt_stereotype")


def run(params: Params, params_file: Path) -> Registration:
    """Train, evaluate, register and promote; returns the registration."""
    stacks = Stacks.load(params.data.stacks)
    check_design(params, stacks, params_file)
    cnn = partial(evaluate_cnn, params=params, progress=show_progress())
    with stage_run("train", params) as stage, atomic_dir(params.data.models / "cnn") as saved:
        if params.tuning.mode == "nested":
            run_studies(params, progress=show_progress())  # in parallel processes; the evaluation then reads them
        evidence = cross_validate_models(stage, params, stacks, {"cnn": (cnn, ("cnn", "tuning"))})["cnn"]["balanced"]
        for cage, model in held_out_models(evidence.result, stacks.cage).items():  # for explain
            save_cnn(model, stacks.X.shape[1:3], stacks.classes, saved / "held_out" / f"{cage}.npz")
        final, study = fit_final(stacks, params)
        save_cnn(final, stacks.X.shape[1:3], stacks.classes, saved / "final.npz")
        tags = {"model_family": "cnn", "final": "true", "target": stacks.target_column, **evidence.tags}
        tags.update(provenance_tags(params))
        digest = fingerprint(final, {"metrics": evidence.metrics, "tags": evidence.tags})
        with stage.child("cnn-final", {**tags, "cv_scheme": evidence.scheme, "fingerprint": digest}) as run:
            _log_final(run, params, final, study, evidence, tags)
            registration = registered_already(params.registry_of_target.model_name, digest)
            if registration is None:
                version = _register(run, params, stacks, final, evidence, {**tags, "fingerprint": digest})
                registration = _promote(params, version, evidence)
            run.set_tags(
                {
                    "registered_model": registration.name,
                    "registered_version": registration.version,
                    "registered_alias": registration.alias,
                    "promotion_reason": registration.reason,
                }
            )
    record = {k: getattr(registration, k) for k in ("name", "version", "alias", "metric", "value", "reason")}
    record["model_uri"] = f"models:/{registration.name}/{registration.version}"
    write_json(record, params.data.reports / "registered_model.json")
    log.info(
        "train: final model %s version %s: %s (%s)",
        registration.name,
        registration.version,
        registration.alias,
        registration.reason,
    )
    return registration


def _log_final(run: StageRun, params: Params, final: CNNClassifier, study, evidence: Evaluation, tags: dict) -> None:
    """The final model's settings, the parameters its stacks were made with, what to expect of it (its balanced
    cross-validation), its loss and its tuning trials."""
    run.log_params(
        {
            **{f"model.{k}": v for k, v in final.get_params().items()},
            **flat_params(params, ("histograms", "stops", "registry")),
        }
    )
    run.log_metrics(evidence.metrics)
    run.log_series("train_loss", final.loss_curve_)
    if study is not None:
        log_trials(run, "cnn-final", trial_records(study), tags)


def _register(
    run: StageRun, params: Params, stacks: Stacks, final: CNNClassifier, evidence: Evaluation, tags: dict
) -> str:
    """Log the final model as a pyfunc and register it, its balanced cross-validation as what to expect of it."""
    info = log_model(final, params, stacks)
    version_tags = {
        **tags,
        "cv_scheme": evidence.scheme,
        "run_id": run.run.info.run_id,
        "params": final.get_params(),
        "histograms": params.histograms.model_dump(mode="json"),
        "cv.confusion": evidence.confusion.tolist(),  # beside an external validation's
    }
    description = describe(evidence.metrics, SCHEMES[evidence.scheme], tags, stacks)
    return register(info.model_uri, params.registry_of_target, evidence.metrics, version_tags, description)


def _promote(params: Params, version: str, evidence: Evaluation) -> Registration:
    """``champion`` or ``challenger``, decided on the balanced evidence (never a selection-biased score)."""
    significant = above_chance(evidence.metrics, params.evaluation.confidence)
    biased = evidence.tags.get("selection_biased") == "true"  # a flat-tuned score was chosen by looking
    return promote(params.registry_of_target, version, significant, biased)
