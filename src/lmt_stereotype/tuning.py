"""Optuna search of the CNN's settings, nested inside the cage folds.

The accuracy reported for a tuned CNN must not have seen its test cage, so each outer
leave-one-cage-out fold gets its own study, whose trials are scored by cage folds of
that fold's training cages only. Studies live in an Optuna RDB storage (SQLite by
default, PostgreSQL for many workers): a study interrupted half-way resumes where it
stopped, and its name carries a fingerprint of the data and the search, so a changed
cohort or search space never resumes a stale study.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

import numpy as np
import optuna
from sklearn.model_selection import GroupKFold
from tqdm import tqdm

from lmt_stereotype.config import CLASSES, CNNParams, Params, TuningParams
from lmt_stereotype.evaluation import CVResult, Evaluation, Fold, make_folds, report
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.models import CNNClassifier
from lmt_stereotype.tracking import rooted

optuna.logging.set_verbosity(optuna.logging.WARNING)  # trial results go to MLflow and the reports

SEARCHED = ("lr", "momentum", "weight_decay", "epochs", "batch_size", "transform")


def inner_folds(cages: np.ndarray, n_folds: int) -> list[Fold]:
    """Cage folds over the given recordings (indices into ``cages``): no cage on both sides."""
    cages = np.asarray(cages)
    n = min(n_folds, len(np.unique(cages)))
    if n < 2:
        raise ValueError(f"tuning needs at least 2 training cages for its inner folds, got {n}")
    splitter = GroupKFold(n_splits=n)
    return [
        Fold(f"inner{i}", train, test)
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(cages)), groups=cages))
    ]


def suggest(trial: optuna.Trial, tuning: TuningParams) -> dict[str, Any]:
    """One point of the search space, as CNNClassifier settings."""
    space = tuning.space
    return {
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "momentum": trial.suggest_float("momentum", *space.momentum),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay),
        "epochs": trial.suggest_int("epochs", *space.epochs),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_size)),
        "transform": trial.suggest_categorical("transform", list(space.transform)),
    }


def fixed_setting(cnn: CNNParams) -> dict[str, Any]:
    """The ``cnn`` section's own setting (the paper's), always the first trial of a study."""
    return {name: getattr(cnn, name) for name in SEARCHED}


def study_name(base: str, X: np.ndarray, y: np.ndarray, cages: np.ndarray, cnn: CNNParams, tuning: TuningParams) -> str:
    """``base`` plus a fingerprint of the recordings, labels, fixed settings and search space."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(X), np.asarray(y), np.asarray(cages).astype(str)):
        digest.update(array.tobytes())
    settings = {"cnn": cnn.model_dump(mode="json"), "tuning": tuning.model_dump(mode="json", exclude={"storage"})}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return f"{base}-{digest.hexdigest()[:12]}"


class Objective:
    """Mean inner-fold accuracy of a trial's setting; reported fold by fold so a pruner can stop it early."""

    def __init__(self, X: np.ndarray, y: np.ndarray, cages: np.ndarray, cnn: CNNParams, tuning: TuningParams):
        self.X, self.y, self.cages = X, y, np.asarray(cages)
        self.cnn, self.tuning = cnn, tuning
        self.folds = inner_folds(self.cages, tuning.inner_folds)

    def __call__(self, trial: optuna.Trial) -> float:
        setting = suggest(trial, self.tuning)
        trial.set_user_attr("cages", sorted(map(str, np.unique(self.cages))))
        scores = []
        for step, fold in enumerate(self.folds):
            model = CNNClassifier.from_params(self.cnn).set_params(**setting)
            model.fit(self.X[fold.train], self.y[fold.train])
            scores.append(float(np.mean(model.predict(self.X[fold.test]) == self.y[fold.test])))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PENDING = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)


def open_study(name: str, tuning: TuningParams, storage: str, cnn: CNNParams) -> optuna.Study:
    """Create or resume the study ``name``, making sure the fixed setting is (or will be) one of its trials.

    A worker that dies without a word leaves its trial RUNNING; the storage's heartbeat
    marks it failed after a minute and it is tried again with the same setting.
    """
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            storage,
            heartbeat_interval=20,
            grace_period=60,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=tuning.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    fixed = fixed_setting(cnn)
    if not any(
        t.state in FINISHED + PENDING and t.system_attrs.get("fixed_params", t.params) == fixed
        for t in study.get_trials(deepcopy=False)
    ):
        study.enqueue_trial(fixed)
    return study


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def tune(
    X: np.ndarray, y: np.ndarray, cages: np.ndarray, cnn: CNNParams, tuning: TuningParams, storage: str, name: str
) -> optuna.Study:
    """Run the study ``name`` on these recordings until it holds ``n_trials`` finished trials.

    Resuming an interrupted study runs only the trials it lacks; several workers may run
    this on one study at once (they stop together when the count is reached).
    """
    study = open_study(name, tuning, storage, cnn)
    remaining = tuning.n_trials - n_finished(study)
    if remaining > 0:
        study.optimize(
            Objective(X, y, cages, cnn, tuning),
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(tuning.n_trials, states=FINISHED)],
        )
    return study


def best_setting(study: optuna.Study) -> dict[str, Any]:
    """The best finished trial's CNN settings."""
    return dict(study.best_trial.params)


def nested_cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    cages: np.ndarray,
    outer: list[Fold],
    cnn: CNNParams,
    tuning: TuningParams,
    storage: str,
    progress: bool = False,
) -> tuple[CVResult, dict[str, optuna.Study]]:
    """Tune on each outer fold's training cages, refit the best setting there, predict its test cage.

    The accuracy of these out-of-fold predictions is unbiased by the tuning: no trial of
    a fold's study saw that fold's test recordings.
    """
    y = np.asarray(y)
    result = CVResult(y, np.full(len(y), -1), np.zeros((len(y), len(CLASSES))), np.empty(len(y), dtype=object))
    studies = {}
    for fold in tqdm(outer, desc="nested tuning", disable=not progress, unit="fold"):
        train_X, train_y, train_cages = X[fold.train], y[fold.train], np.asarray(cages)[fold.train]
        name = study_name(f"{tuning.study}-outer-{fold.name}", train_X, train_y, train_cages, cnn, tuning)
        studies[fold.name] = study = tune(train_X, train_y, train_cages, cnn, tuning, storage, name)
        model = CNNClassifier.from_params(cnn).set_params(**best_setting(study)).fit(train_X, train_y)
        result.y_pred[fold.test] = model.predict(X[fold.test])
        result.proba[fold.test] = model.predict_proba(X[fold.test])
        result.fold[fold.test] = fold.name
        result.models.append(model)
        result.loss_curves[fold.name] = list(model.loss_curve_)
    return result, studies


def evaluate_tuned(stacks: Stacks, scheme: str, params: Params, progress: bool = False) -> Evaluation:
    """The CNN under one scheme, tuned inside each outer fold; reported like every other model.

    Its permutation p-value is left undefined (NaN): each permutation would be a whole
    nested tuning. The fixed-setting CNN (``tuning.enabled: false``) has one.
    """
    folds = make_folds(scheme, stacks, params.evaluation)
    storage = rooted(params.tuning.storage)
    result, studies = nested_cross_validate(
        stacks.X, stacks.y, stacks.cage, folds, params.cnn, params.tuning, storage, progress
    )
    evaluation = report("cnn", scheme, stacks, folds, result, params.evaluation, np.array([]))
    for fold, study in studies.items():
        evaluation.trials[fold] = [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials
        ]
        chosen = {f"best_{k}": v for k, v in best_setting(study).items() if isinstance(v, int | float)}
        evaluation.fold_metrics[fold].update({"inner_accuracy_best": study.best_value, **chosen})
    return evaluation
