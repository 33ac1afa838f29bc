"""What the cross-validating stages (train, baselines, tune) share: the design check, and models
cross-validated into reports and MLflow runs alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmt_stereotype.config import Params
from lmt_stereotype.errors import InputError
from lmt_stereotype.evaluation import CAVEATS, SCHEMES, Evaluation, make_folds, write_reports
from lmt_stereotype.files import atomic_dir, write_json
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.tracking import StageRun, flat_params, provenance_tags
from lmt_stereotype.tuning import inner_folds, outside_space

log = logging.getLogger("lmt_stereotype")

CrossValidate = Callable[[Stacks, str], Evaluation]
"""A model's cross-validation under one scheme: (stacks, scheme) -> its Evaluation."""


def check_design(params: Params, stacks: Stacks, params_file: Path, tuned: bool = True) -> None:
    """Refuse in one line a cohort that a scheme or (``tuned``) the nested tuning cannot fold.

    The stacks must be labelled for ``params.target``; balanced folds need 2 cages of each
    stratum (sex in the paper); every training set must hold every class of the cohort;
    nested tuning needs 2 cages of each stratum inside every outer training set. Fixed
    ``cnn`` settings outside the search space are worth a warning: they are still tried.
    """
    target = stacks.target
    wanted = params.target.classes or target.classes
    if target.column != params.target.column or tuple(wanted) != target.classes:
        raise InputError(
            params.data.stacks,
            f"labelled for {target.column} {list(target.classes)}, but {params_file} asks for "
            f"{params.target.column} {list(wanted)}; run `lmt-stereotype histograms` again",
        )
    if len(set(stacks.label)) < 2:
        raise InputError(
            params.data.stacks,
            f"every recording has {target.column} {str(stacks.label[0])!r}: two classes or more are needed",
        )
    nested = tuned and params.tuning.mode == "nested"
    if tuned and params.tuning.enabled:
        for problem in outside_space(params.cnn, params.tuning):
            log.warning("%s: %s; it is still tried as the fixed trial", params_file, problem)
    try:
        for scheme in params.evaluation.schemes:
            folds = make_folds(scheme, stacks.cage, params.evaluation, target, stacks.y)
            for fold in folds:
                lacking = sorted(set(stacks.label) - set(stacks.label[fold.train]))
                if lacking:
                    raise ValueError(
                        f"{scheme} fold {fold.name} leaves no {', '.join(lacking)} recording to train on "
                        f"(a class held by too few cages)"
                    )
                if nested and scheme in params.tuning.schemes:
                    inner_folds(stacks.cage[fold.train], target, stacks.y[fold.train], params.tuning.inner_folds)
    except ValueError as exc:
        raise InputError(
            params.data.stacks, f"{exc} ({len(set(stacks.cage))} cages); add cages or change {params_file}"
        ) from None


def cross_validate_models(
    run: StageRun, params: Params, stacks: Stacks, models: dict[str, tuple[CrossValidate, tuple[str, ...]]]
) -> dict[str, dict[str, Evaluation]]:
    """Cross-validate each model under each scheme; write its reports and log its MLflow runs under ``run``.

    ``models`` maps a name to (its cross-validation, the parameter sections it is made from).
    Writes ``reports/<model>/<scheme>/`` and ``reports/<model>.json`` (schemes in
    ``evaluation.schemes`` order, balanced first); logs a run per model and scheme with a
    nested run per fold (and per tuning trial). Returns each model's Evaluation per scheme.
    """
    provenance = provenance_tags(params)
    evaluations: dict[str, dict[str, Evaluation]] = {}
    for model, (cross_validate, sections) in models.items():
        evaluations[model] = {}
        with atomic_dir(params.data.reports / model) as folder:
            for scheme in params.evaluation.schemes:
                evaluations[model][scheme] = result = cross_validate(stacks, scheme)
                files = write_reports(result, folder / scheme)
                tags = {"model_family": model, "cv_scheme": scheme, **result.tags, **provenance}
                described = {"cv_scheme_name": SCHEMES[scheme], "cv_scheme_caveat": CAVEATS[scheme]}
                if result.warning:
                    described["below_chance_warning"] = result.warning
                with run.child(f"{model}-{scheme}", {**tags, **described}) as parent:
                    parent.log_params(flat_params(params, (*sections, "evaluation", "histograms")))
                    parent.log_metrics(result.metrics)
                    for path in files:
                        parent.log_artifact(path)
                    for fold, metrics in result.fold_metrics.items():
                        with parent.child(f"{model}-{scheme}-{fold}", {**tags, "fold": fold}) as child:
                            child.log_metrics(metrics)
                            if fold in result.loss_curves:
                                child.log_series("train_loss", result.loss_curves[fold])
                            trials = result.trials.get(fold, [])
                            log_trials(child, f"{model}-{scheme}-{fold}", trials, {**tags, "fold": fold})
                _log_summary(model, scheme, result.metrics, result.warning)
        per_scheme = {scheme: dict(sorted(e.metrics.items())) for scheme, e in evaluations[model].items()}
        write_json(per_scheme, params.data.reports / f"{model}.json", sort_keys=False)  # balanced first
    return evaluations


def log_trials(run: StageRun, prefix: str, trials: list[dict[str, Any]], tags: dict[str, Any]) -> None:
    """One nested run per Optuna trial, with its parameters, its inner cross-validated accuracy (a
    pruned trial's at the epoch it stopped) and the epochs it trained."""
    for trial in trials:
        trial_tags = {**tags, "trial": trial["number"], "trial_state": trial["state"]}
        with run.child(f"{prefix}-trial{trial['number']}", trial_tags) as t:
            t.log_params(trial["params"])
            if trial["value"] is not None:
                t.log_metrics({"inner_accuracy": trial["value"]})
            if trial["epochs_trained"] is not None:
                t.log_metrics({"epochs_trained": trial["epochs_trained"]})


def _log_summary(model: str, scheme: str, m: dict[str, float], warning: str | None) -> None:
    """One line per model and scheme: accuracy, interval, chance, p-values, and the females' and males'
    accuracy where sex is a grouping column (the recall of each class otherwise)."""
    levels = {"females": "accuracy_female", "males": "accuracy_male"}
    if not set(levels.values()) <= set(m):
        levels = {k.removeprefix("recall_"): k for k in m if k.startswith("recall_")}
    log.info(
        "%s %s: accuracy %.3f [%.3f, %.3f] (chance %.2f, p = %.3g, below chance p = %.3g), %s",
        model,
        scheme,
        m["accuracy"],
        m["accuracy_ci_low"],
        m["accuracy_ci_high"],
        m["chance_level"],
        m["permutation_p_value"],
        m["below_chance_p"],
        ", ".join(f"{name} {m[key]:.3f}" for name, key in levels.items()),
    )
    if warning:
        log.warning("%s %s: %s", model, scheme, warning)
