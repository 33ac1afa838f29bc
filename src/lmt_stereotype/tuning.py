"""Optuna search of the CNN's settings, nested inside the cage folds.

The accuracy reported for a tuned CNN must not have seen its test cages, so each outer
fold of the schemes in ``tuning.schemes`` (the balanced one by default) gets its own
study, whose trials are scored by cage-balanced folds of that fold's training cages
only; the final model's study then tunes on every cage. The other schemes train the
``cnn`` section's fixed settings.
Studies live in an Optuna RDB storage (SQLite by default, PostgreSQL for many
workers, local or remote, see :mod:`lmt_stereotype.tuning_workers`): a study
interrupted half-way resumes where it stopped, and its name carries a fingerprint of
the data and the search, so a changed cohort or search space never resumes a stale
study. A quicker flat mode tunes on the balanced cross-validation score itself; its
score is selection-biased.

Vocabulary: a CNN's **settings** are the keyword arguments of
:class:`~lmt_stereotype.models.CNNClassifier` (``channels`` a tuple, one width per
branch); a trial's **trial parameters** are Optuna's point of the search space, one
``channels_k{k}`` per branch (:func:`cnn_settings` turns one into the other).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm

from lmt_stereotype.config import CNNParams, Params, TuningParams
from lmt_stereotype.design import cage_strata
from lmt_stereotype.evaluation import (
    CVResult,
    Evaluation,
    Fold,
    balanced_cage_folds,
    build_evaluation,
    evaluate,
    make_folds,
    out_of_fold,
)
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import Target
from lmt_stereotype.models import CNNClassifier, RecordingPatches, sparse_patches
from lmt_stereotype.tracking import rooted

optuna.logging.set_verbosity(optuna.logging.WARNING)  # trial results go to MLflow and the reports
# Fixed settings outside the space are still tried as they are; `outside_space` says so once, in words.
warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range", category=UserWarning)

SEARCHED = ("lr", "momentum", "weight_decay", "epochs", "batch_size", "transform")
# How a study runs, not what it searches: outside its fingerprint (raising n_trials extends a study)
NOT_TUNING = {"cnn": {"threads", "device", "convolution", "n_permutations"}, "tuning": {"storage", "n_trials", "study"}}


def inner_folds(cages: np.ndarray, target: Target, y: np.ndarray, n_folds: int, seed: int = 0) -> list[Fold]:
    """Cage-balanced folds over the given recordings (indices into ``cages``): no cage on both
    sides, and about as many cages of each stratum (male and female in the paper) in each,
    so that a trial is never scored by folds whose training sets lean against their test cages.

    At most as many folds as the smallest stratum has cages, so each fold holds out every stratum.
    """
    strata, mixed = cage_strata(target, y, cages)
    sizes = [len(members) for members in strata.values()]
    n = min(n_folds, *sizes) if len(sizes) > 1 else min(n_folds, len(np.unique(cages)))
    if n < 2:
        counts = ", ".join(f"{len(m)} {s}" for s, m in strata.items()) or f"{len(mixed)} mixed"
        raise ValueError(f"tuning needs at least 2 training cages of each stratum for its inner folds, got {counts}")
    return balanced_cage_folds(cages, target, y, n_folds=n, seed=seed)


def suggest(trial: optuna.Trial, tuning: TuningParams, kernel_sizes: tuple[int, ...]) -> dict[str, Any]:
    """One point of the search space, as trial parameters (one width per branch: ``channels_k3``, ...)."""
    space = tuning.space
    return {
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "momentum": trial.suggest_float("momentum", *space.momentum),
        "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay),
        "epochs": trial.suggest_int("epochs", *space.epochs),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_size)),
        "transform": trial.suggest_categorical("transform", list(space.transform)),
        **{f"channels_k{k}": trial.suggest_int(f"channels_k{k}", *space.channels, log=True) for k in kernel_sizes},
    }


def cnn_settings(trial_params: dict[str, Any], kernel_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Trial parameters as :class:`~lmt_stereotype.models.CNNClassifier` settings."""
    widths = tuple(trial_params[f"channels_k{k}"] for k in kernel_sizes)
    return {**{k: trial_params[k] for k in SEARCHED}, "channels": widths}


def fixed_trial_params(cnn: CNNParams) -> dict[str, Any]:
    """The ``cnn`` section's own settings (the paper's) as trial parameters: always a trial of a study."""
    widths = {f"channels_k{k}": c for k, c in zip(cnn.kernel_sizes, cnn.channels)}
    return {**{name: getattr(cnn, name) for name in SEARCHED}, **widths}


def outside_space(cnn: CNNParams, tuning: TuningParams) -> list[str]:
    """The ``cnn`` settings that lie outside ``tuning.space`` (still tried, as the fixed trial)."""
    space, problems = tuning.space, []
    for name in ("lr", "momentum", "weight_decay", "epochs"):
        low, high = getattr(space, name)
        if not low <= getattr(cnn, name) <= high:
            problems.append(f"cnn.{name} = {getattr(cnn, name)} is outside tuning.space.{name} [{low}, {high}]")
    for name in ("batch_size", "transform"):
        if getattr(cnn, name) not in getattr(space, name):
            problems.append(f"cnn.{name} = {getattr(cnn, name)} is not among tuning.space.{name}")
    low, high = space.channels
    if any(not low <= c <= high for c in cnn.channels):
        problems.append(f"cnn.channels {list(cnn.channels)} leave tuning.space.channels [{low}, {high}]")
    return problems


def study_name(
    prefix: str, X: np.ndarray, y: np.ndarray, cages: np.ndarray, cnn: CNNParams, tuning: TuningParams
) -> str:
    """``prefix`` plus a fingerprint of the recordings, labels, fixed settings and search space."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(X), np.asarray(y), np.asarray(cages).astype(str)):
        digest.update(array.tobytes())
    settings = {
        "cnn": cnn.model_dump(mode="json", exclude=NOT_TUNING["cnn"]),
        "tuning": tuning.model_dump(mode="json", exclude=NOT_TUNING["tuning"]),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return f"{prefix}-{digest.hexdigest()[:12]}"


class Objective:
    """Mean inner-fold accuracy of a trial's settings.

    The inner folds' CNNs train side by side, epoch by epoch (each exactly as it would
    alone); every ``tuning.min_epochs`` epochs their mean held-out accuracy is reported,
    so the pruner can stop a poor setting after a fraction of its epochs. The epochs a
    trial trained and the folds it was scored on are its ``epochs_trained`` and ``folds``
    attributes.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        cages: np.ndarray,
        target: Target,
        cnn: CNNParams,
        tuning: TuningParams,
        folds: list[Fold] | None = None,
    ):
        self.X, self.y, self.cages, self.n_classes = X, y, np.asarray(cages), len(target.classes)
        self.cnn, self.tuning = cnn, tuning
        self.folds = folds if folds is not None else inner_folds(self.cages, target, y, tuning.inner_folds, tuning.seed)
        self._patches_by_transform: dict[str, list[RecordingPatches] | None] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        settings = cnn_settings(suggest(trial, self.tuning, self.cnn.kernel_sizes), self.cnn.kernel_sizes)
        trial.set_user_attr("cages", sorted(map(str, np.unique(self.cages))))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("folds", [fold.name for fold in self.folds])
        models = [CNNClassifier.from_params(self.cnn, self.n_classes).set_params(**settings) for _ in self.folds]
        patches = self._patches(models[0])
        with models[0].torch_threads():
            fits = [
                m.fit_epochs(
                    self.X[f.train], self.y[f.train], None if patches is None else [patches[i] for i in f.train]
                )
                for m, f in zip(models, self.folds)
            ]
            for epoch in range(1, settings["epochs"] + 1):
                for fit in fits:
                    next(fit)
                if epoch % self.tuning.min_epochs and epoch < settings["epochs"]:
                    continue
                score = float(np.mean([self._accuracy(m, f, patches) for m, f in zip(models, self.folds)]))
                trial.report(score, epoch)
                if epoch < settings["epochs"] and trial.should_prune():
                    trial.set_user_attr("epochs_trained", epoch)
                    raise optuna.TrialPruned()
        trial.set_user_attr("epochs_trained", settings["epochs"])
        return score

    def _patches(self, model: CNNClassifier) -> list[RecordingPatches] | None:
        """The study's recordings as sparse patches under the model's transform, built once per
        transform and shared by every trial and inner fold (None: the model trains dense)."""
        if model.transform not in self._patches_by_transform:
            inputs = model.to_tensor(self.X)
            sparse = model.trains_sparse(inputs)
            self._patches_by_transform[model.transform] = sparse_patches(inputs, model.kernel_sizes) if sparse else None
        return self._patches_by_transform[model.transform]

    def _accuracy(self, model: CNNClassifier, fold: Fold, patches: list[RecordingPatches] | None) -> float:
        test = None if patches is None else [patches[i] for i in fold.test]
        return float(np.mean(model.predict(self.X[fold.test], test) == self.y[fold.test]))


def make_pruner(tuning: TuningParams) -> optuna.pruners.BasePruner:
    """Successive halving on epochs: at ``min_epochs``, ``min_epochs * reduction_factor``, ... a
    trial goes on only if its inner accuracy there is among the best ``1 / reduction_factor``
    of the trials that reached that epoch (the first ones, with too few to compare, only if
    they are the best so far)."""
    if tuning.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=tuning.min_epochs, reduction_factor=tuning.reduction_factor, min_early_stopping_rate=0
    )


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PENDING = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)


def open_study(name: str, tuning: TuningParams, storage: str, cnn: CNNParams, worker: int = 0) -> optuna.Study:
    """Create or resume the study ``name``, making sure the fixed settings are (or will be) one of its trials.

    The sampler's seed is ``tuning.seed`` offset by the trials already in the study and
    by the ``worker`` index, so a fresh single-process study is reproducible while a
    resumed study or a second worker does not draw the same settings again. A worker that
    dies without a word leaves its trial RUNNING; the storage's heartbeat marks it failed
    after a minute and it is tried again with the same settings.
    """
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            storage,
            engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None,
            heartbeat_interval=20,
            grace_period=60,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        pruner=make_pruner(tuning),
    )
    offset = len(study.get_trials(deepcopy=False)) + 10_000 * worker
    study.sampler = optuna.samplers.TPESampler(seed=tuning.seed + offset)
    fixed = fixed_trial_params(cnn)
    if not any(
        t.state in FINISHED + PENDING and t.system_attrs.get("fixed_params", t.params) == fixed
        for t in study.get_trials(deepcopy=False)
    ):
        study.enqueue_trial(fixed)
    return study


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def tune(
    X: np.ndarray,
    y: np.ndarray,
    cages: np.ndarray,
    target: Target,
    cnn: CNNParams,
    tuning: TuningParams,
    storage: str,
    name: str,
    folds: list[Fold] | None = None,
    worker: int = 0,
) -> optuna.Study:
    """Run the study ``name`` on these recordings until it holds ``n_trials`` finished trials.

    Trials are scored on ``folds`` (default: ``tuning.inner_folds`` cage folds).
    Resuming an interrupted study runs only the trials it lacks; several workers may run
    this on one study at once (they stop together when the count is reached).
    """
    study = open_study(name, tuning, storage, cnn, worker)
    remaining = tuning.n_trials - n_finished(study)
    if remaining > 0:
        study.optimize(
            Objective(X, y, cages, target, cnn, tuning, folds),
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(tuning.n_trials, states=FINISHED)],
        )
    return study


def best_settings(study: optuna.Study, cnn: CNNParams) -> dict[str, Any]:
    """The best finished trial's CNN settings."""
    return cnn_settings(study.best_trial.params, cnn.kernel_sizes)


def nested_study_prefix(params: Params, scheme: str) -> str:
    """Name prefix of the studies nested in ``scheme``'s outer folds (train and tune must agree)."""
    return f"{params.tuning.study}-{scheme}"


def fold_study_name(
    prefix: str, fold: Fold, X: np.ndarray, y: np.ndarray, cages: np.ndarray, cnn: CNNParams, tuning: TuningParams
) -> str:
    """The study that tunes on ``fold``'s training recordings."""
    return study_name(f"{prefix}-{fold.name}", X[fold.train], y[fold.train], np.asarray(cages)[fold.train], cnn, tuning)


def nested_cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    cages: np.ndarray,
    target: Target,
    outer: list[Fold],
    cnn: CNNParams,
    tuning: TuningParams,
    storage: str,
    progress: bool = False,
    prefix: str | None = None,
) -> tuple[CVResult, dict[str, optuna.Study]]:
    """Tune on each outer fold's training cages, refit the best settings there, predict its test cages.

    The accuracy of these out-of-fold predictions is unbiased by the tuning: no trial of
    a fold's study saw that fold's test recordings. Studies already finished (by
    ``lmt-stereotype tune`` workers, or an earlier run) are only read. The studies are
    named ``prefix`` (default ``tuning.study``) plus the fold's name and a fingerprint.
    """
    y = np.asarray(y)
    cages = np.asarray(cages)
    studies, models, fold_proba = {}, [], []
    for fold in tqdm(outer, desc="nested tuning", disable=not progress, unit="fold"):
        name = fold_study_name(prefix or tuning.study, fold, X, y, cages, cnn, tuning)
        train_X, train_y = X[fold.train], y[fold.train]
        studies[fold.name] = study = tune(train_X, train_y, cages[fold.train], target, cnn, tuning, storage, name)
        model = CNNClassifier.from_params(cnn, len(target.classes)).set_params(**best_settings(study, cnn))
        model.fit(train_X, train_y)
        fold_proba.append(model.predict_proba(X[fold.test]))
        models.append(model)
    result = out_of_fold(y, outer, fold_proba)
    result.models = models
    result.loss_curves = {fold.name: list(model.loss_curve_) for fold, model in zip(outer, models)}
    return result, studies


def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """A study's trials as plain records (for reports and MLflow trial runs); ``epochs_trained``
    is below the trial's ``epochs`` when the pruner stopped it."""
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "epochs_trained": t.user_attrs.get("epochs_trained"),
        }
        for t in study.trials
    ]


def evaluate_tuned(stacks: Stacks, scheme: str, params: Params, progress: bool = False) -> Evaluation:
    """The CNN under one scheme, tuned inside each outer fold; reported like every other model.

    Its permutation p-value is left undefined (NaN): each permutation would be a whole
    nested tuning. The CNN with fixed settings (``tuning.mode: off``) has one.
    """
    folds = make_folds(scheme, stacks.cage, params.evaluation, stacks.target, stacks.y)
    storage = rooted(params.tuning.storage)
    result, studies = nested_cross_validate(
        stacks.X,
        stacks.y,
        stacks.cage,
        stacks.target,
        folds,
        params.cnn,
        params.tuning,
        storage,
        progress,
        prefix=nested_study_prefix(params, scheme),
    )
    evaluation = build_evaluation("cnn", scheme, stacks, folds, result, params.evaluation, np.array([]))
    evaluation.tags["tuning"] = "nested"
    for fold, study in studies.items():
        evaluation.trials[fold] = trial_records(study)
        best = {f"best_{k}": v for k, v in study.best_trial.params.items() if isinstance(v, int | float)}
        evaluation.fold_metrics[fold].update({"inner_accuracy_best": study.best_value, **best})
    return evaluation


def evaluate_cnn(stacks: Stacks, scheme: str, params: Params, progress: bool = False) -> Evaluation:
    """The CNN under one scheme, made as ``params`` say.

    Nested mode tunes it inside each outer fold of the schemes in ``tuning.schemes`` and
    trains the ``cnn`` settings in the others (no p-value there: a full cross-validation per
    permutation); flat mode applies the flat study's choice everywhere; with tuning off,
    the ``cnn`` settings get ``cnn.n_permutations`` permutations in the balanced scheme.
    """
    tuning = params.tuning
    if tuning.mode == "nested" and scheme in tuning.schemes:
        return evaluate_tuned(stacks, scheme, params, progress)
    if tuning.mode == "flat":
        return evaluate_flat(stacks, scheme, params, progress)
    n = params.cnn.n_permutations if not tuning.enabled and scheme == "balanced" else 0
    make = partial(CNNClassifier.from_params, params.cnn, len(stacks.classes))
    return evaluate("cnn", make, stacks, scheme, params.evaluation, n, progress, tags={"tuning": "off"})


@dataclass(frozen=True)
class StudySpec:
    """One study the train stage needs: its name, the recordings (indices) it tunes on, their folds."""

    name: str
    index: np.ndarray
    folds: list[Fold] | None = None  # None: tuning.inner_folds cage folds


def final_study(stacks: Stacks, params: Params) -> StudySpec:
    """The study that chooses the final model's settings on every recording.

    Nested mode scores its trials on cage-balanced folds of all the cages; flat mode on
    the balanced scheme's folds themselves, so its best score is the reported one,
    chosen by looking at it (selection-biased).
    """
    everything = Fold("all", np.arange(len(stacks.y)), np.array([], dtype=np.int64))
    flat = params.tuning.mode == "flat"
    prefix = f"{params.tuning.study}-{'flat' if flat else 'final'}"
    name = fold_study_name(prefix, everything, stacks.X, stacks.y, stacks.cage, params.cnn, params.tuning)
    folds = make_folds("balanced", stacks.cage, params.evaluation, stacks.target, stacks.y) if flat else None
    return StudySpec(name, everything.train, folds)


def run_study(
    spec: StudySpec, stacks: Stacks, params: Params, cnn: CNNParams | None = None, worker: int = 0
) -> optuna.Study:
    """:func:`tune` ``spec``'s study on its recordings of ``stacks`` (``cnn`` instead of ``params.cnn``:
    the same search on other threads), as worker ``worker``."""
    i, storage = spec.index, rooted(params.tuning.storage)
    cnn = cnn or params.cnn
    target = stacks.target
    return tune(
        stacks.X[i], stacks.y[i], stacks.cage[i], target, cnn, params.tuning, storage, spec.name, spec.folds, worker
    )


def evaluate_flat(stacks: Stacks, scheme: str, params: Params, progress: bool = False) -> Evaluation:
    """The CNN with the settings that scored best on the balanced folds, cross-validated under ``scheme``.

    Quick, and biased upwards: the settings were chosen by the very score reported. Its runs
    are tagged selection-biased and its model is never promoted to champion.
    """
    best = best_settings(run_study(final_study(stacks, params), stacks, params), params.cnn)

    def make() -> CNNClassifier:
        return CNNClassifier.from_params(params.cnn, len(stacks.classes)).set_params(**best)

    tags = {"tuning": "flat", "selection_biased": "true"}
    return evaluate("cnn", make, stacks, scheme, params.evaluation, 0, progress, tags=tags)


def fit_final(stacks: Stacks, params: Params) -> tuple[CNNClassifier, optuna.Study | None]:
    """The model to deploy: tuned on every cage, then fitted on every recording.

    Its expected accuracy is the cross-validation's, not this study's best value, which
    has seen every cage. Without tuning it has the ``cnn`` section's settings.
    """
    model = CNNClassifier.from_params(params.cnn, len(stacks.classes))
    study = None
    if params.tuning.enabled:
        study = run_study(final_study(stacks, params), stacks, params)
        model.set_params(**best_settings(study, params.cnn))
    return model.fit(stacks.X, stacks.y), study


def study_plan(stacks: Stacks, params: Params) -> list[StudySpec]:
    """Every study of a tuned ``train``: (nested) one per outer fold of each tuned scheme; the final model's."""
    plan = []
    if params.tuning.mode == "nested":
        for scheme in params.tuning.schemes:
            prefix = nested_study_prefix(params, scheme)
            for fold in make_folds(scheme, stacks.cage, params.evaluation, stacks.target, stacks.y):
                name = fold_study_name(prefix, fold, stacks.X, stacks.y, stacks.cage, params.cnn, params.tuning)
                plan.append(StudySpec(name, fold.train))
    return [*plan, final_study(stacks, params)]
