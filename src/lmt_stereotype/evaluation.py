"""Honest evaluation: cage folds, out-of-fold predictions, metrics with their uncertainty.

Mice of a cage share strong traits, so the unit of generalisation is the cage: every
scheme but the leaky K-fold holds out whole cages, intervals resample cages, and the
permutation test shuffles labels only where the design makes them exchangeable
(:mod:`~lmt_stereotype.design`: sex across cages and age within a cage in the paper).

The headline scheme is ``balanced``. Leaving one single-sex cage out (``loco``, the
paper's scheme) leaves its sex one cage short in the training set, and a classifier
that has learnt cage fingerprints more than class traits follows that imbalance and
calls the held-out cage the other sex: below-chance accuracy on a cohort with nothing
to learn, and no accuracy at all on one with a weak effect (the stratification bias
of leave-one-out, Parker, Günter & Bedo 2007). Balanced folds hold out one cage of
each cage-level class together (a male and a female cage in the paper), so every
training set keeps the cohort's balance; a target that varies within cages gets one
fold per cage. A plain stratified K-fold is offered too, to show how much cage
leakage inflates accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import confusion_matrix, f1_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lmt_stereotype.config import EvaluationParams
from lmt_stereotype.design import cage_factors, cage_strata, design_permutation
from lmt_stereotype.figures import confusion_figure, loss_figure
from lmt_stereotype.files import write_json, write_table
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import Target
from lmt_stereotype.parallel import pool_size

SCHEMES = {
    "balanced": "cage-balanced: a cage of each cage-level class held out together",
    "loco": "leave-one-cage-out",
    "kfold": "stratified K-fold, cages ignored",
}
CAVEATS = {
    "balanced": "",
    "loco": "the paper's scheme; where the target is a property of the cage (sex in single-sex cages) its "
    "training set holds one cage fewer of the held-out cage's class, which pulls predictions towards the "
    "other classes (stratification bias)",
    "kfold": "cage-mates on both sides of a fold: shows how much cage leakage inflates accuracy",
}


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray
    test: np.ndarray


def _fold(name: str, cages: np.ndarray, held_out) -> Fold:
    out = np.isin(cages, list(held_out))
    return Fold(name, np.flatnonzero(~out), np.flatnonzero(out))


def leave_one_cage_out(cages: np.ndarray) -> list[Fold]:
    """One fold per cage, its recordings (every mouse at every age) all held out together."""
    cages = np.asarray(cages)
    return [_fold(str(cage), cages, [cage]) for cage in np.unique(cages)]


def _deal(order: list[str], n_folds: int, shift: int, cycle: bool) -> list[list[str]]:
    """One stratum's cages into ``n_folds`` folds, fold i taking the cages at positions i + shift (mod n_folds).

    A stratum with fewer cages than folds and ``cycle`` gives each fold one cage, reusing
    them (position (i + shift) mod its size).
    """
    if cycle and len(order) < n_folds:
        return [[order[(i + shift) % len(order)]] for i in range(n_folds)]
    dealt: list[list[str]] = [[] for _ in range(n_folds)]
    for j, cage in enumerate(order):
        dealt[(j - shift) % n_folds].append(cage)
    return dealt


def balanced_cage_folds(
    cages: np.ndarray,
    target: Target,
    y: np.ndarray,
    n_folds: int | None = None,
    matchings: int = 1,
    seed: int = 0,
) -> list[Fold]:
    """Folds of whole cages that keep the cohort's balance of cage-level classes in every training set.

    Cages are grouped by stratum (:func:`~lmt_stereotype.design.cage_strata`: male and female
    in the paper's design), the larger group first, each group in a seeded random order.
    By default (``n_folds`` None) each fold holds out one cage of every stratum: a
    **matching** pairs the i-th cages of the groups, and matching r shifts the pairing
    by r, so ``matchings`` matchings hold out distinct pairs and as many matchings as the
    smallest group has cages hold out every male-female pair once (leave-pair-out). Every
    cage is tested in every matching; a recording tested several times gets its
    predictions averaged (:func:`out_of_fold`).

    The documented rules for other designs:

    - **Unequal numbers** of cages per stratum: a matching has as many folds as the
      largest group has cages; the smaller groups' cages are reused, one per fold, so each
      fold still holds out one cage of each stratum, every training set has lost one cage
      of each, and the cohort's imbalance is never tilted against the held-out cage's class.
    - **Mixed cages** (a cage factor varies within them: a cage holding both sexes) take
      both levels from a training set alike, so they are dealt one per fold over the
      folds (shifted by the matching) beside the single-stratum cages.
    - **One stratum only** (all cages male, or a target that varies within every cage:
      age, littermates of mixed genotype): one fold per cage, leave-one-cage-out.

    With ``n_folds`` k (inner folds of tuning) every group is dealt into k folds instead,
    so each fold holds about the same number of cages of each stratum.
    """
    cages = np.asarray(cages)
    rng = np.random.default_rng(seed)
    strata, mixed_cages = cage_strata(target, y, cages)
    groups = sorted(([str(c) for c in rng.permutation(members)] for members in strata.values()), key=len, reverse=True)
    mixed = [str(c) for c in rng.permutation(mixed_cages)]
    if len(groups) >= 2 and min(map(len, groups)) < 2:
        counts = " and ".join(f"{len(members)} {stratum}" for stratum, members in strata.items())
        raise ValueError(
            f"balanced folds need at least 2 cages of each {'+'.join(cage_factors(target, y, cages))}, "
            f"the cohort has {counts} cages"
        )
    pairs = n_folds is None
    n = (len(groups[0]) if groups else len(mixed)) if pairs else n_folds
    n_matchings = min(matchings, len(groups[-1])) if pairs and len(groups) >= 2 else 1
    folds = []
    for r in range(n_matchings):
        dealt = [_deal(order, n, r if s else 0, cycle=pairs) for s, order in enumerate(groups)]
        dealt.append(_deal(mixed, n, r, cycle=False))
        for i in range(n):
            held_out = sorted({cage for group in dealt for cage in group[i]})
            name = "+".join(held_out) if pairs else f"inner{i}"
            folds.append(_fold(f"m{r}-{name}" if n_matchings > 1 else name, cages, held_out))
    return folds


def stratified_kfold(y: np.ndarray, n_splits: int, seed: int) -> list[Fold]:
    """Class-stratified folds that ignore cages: cage-mates land on both sides (the leak to measure)."""
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [Fold(f"fold{i:02d}", train, test) for i, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y))]


def make_folds(scheme: str, cages: np.ndarray, params: EvaluationParams, target: Target, y: np.ndarray) -> list[Fold]:
    """The folds of ``scheme`` for labels ``y`` of ``target`` (balanced folds follow the cages' strata)."""
    if scheme == "balanced":
        return balanced_cage_folds(cages, target, y, matchings=params.matchings, seed=params.seed)
    if scheme == "loco":
        return leave_one_cage_out(cages)
    return stratified_kfold(y, params.kfold_splits, params.seed)


@dataclass
class CVResult:
    """Out-of-fold predictions of one model under one scheme."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray  # (n, number of classes), averaged over the folds that tested a recording
    fold: np.ndarray  # the fold(s) that tested each recording, ";"-joined
    folds: list[Fold] = field(default_factory=list)
    fold_predictions: dict[str, np.ndarray] = field(default_factory=dict)  # fold -> its own test predictions
    fold_proba: dict[str, np.ndarray] = field(default_factory=dict)  # fold -> its own test probabilities
    models: list[BaseEstimator] = field(default_factory=list)  # fitted, one per fold
    loss_curves: dict[str, list[float]] = field(default_factory=dict)  # fold -> per-epoch loss

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_true == self.y_pred))


def out_of_fold(y: np.ndarray, folds: list[Fold], fold_proba: list[np.ndarray]) -> CVResult:
    """Each recording's prediction from the folds that tested it: their class probabilities
    averaged, then the most probable class (a tie goes to the first fold's choice)."""
    y = np.asarray(y)
    n = len(y)
    total, times = np.zeros((n, fold_proba[0].shape[1])), np.zeros(n)
    first = np.full(n, -1, dtype=np.int64)
    names: list[list[str]] = [[] for _ in range(n)]
    predictions = {}
    for fold, proba in zip(folds, fold_proba):
        total[fold.test] += proba
        times[fold.test] += 1
        predictions[fold.name] = own = proba.argmax(axis=1)
        first[fold.test] = np.where(first[fold.test] < 0, own, first[fold.test])
        for k in fold.test:
            names[k].append(fold.name)
    if (times == 0).any():
        raise ValueError(f"{int((times == 0).sum())} recordings are tested by no fold")
    proba = total / times[:, None]
    best = proba == proba.max(axis=1, keepdims=True)
    y_pred = np.where(best[np.arange(n), first], first, proba.argmax(axis=1))
    fold = np.array([";".join(f) for f in names], dtype=object)
    return CVResult(y, y_pred, proba, fold, list(folds), predictions, {f.name: p for f, p in zip(folds, fold_proba)})


def held_out_models(result: CVResult, cages: np.ndarray) -> dict[str, BaseEstimator]:
    """For each cage, the model of the first fold that held it out: one that never saw the cage."""
    cages = np.asarray(cages)
    models: dict[str, BaseEstimator] = {}
    for fold, model in zip(result.folds, result.models):
        for cage in np.unique(cages[fold.test]):
            models.setdefault(str(cage), model)
    return dict(sorted(models.items()))


class FoldedModel:
    """An estimator ready to be fitted on any fold, many times over (label permutations).

    Pipeline steps before the last one ignore the labels (flattening, scaling, PCA), so
    they are fitted once per training set, on that set's recordings only, and reused for
    every labelling and every fold that trains on the same recordings; only the final
    classifier is refitted. The result is exactly what fitting the whole pipeline per
    fold would give.
    """

    def __init__(self, estimator: BaseEstimator, X: np.ndarray, n_classes: int):
        self._X, self._n_classes = X, n_classes
        if isinstance(estimator, Pipeline) and len(estimator) > 1:
            self._head, self._final = estimator[:-1], estimator[-1]
        else:
            self._head, self._final = None, estimator
        self._fitted: dict[bytes, tuple[BaseEstimator, np.ndarray]] = {}  # training set -> head, its output

    def _inputs(self, fold: Fold) -> tuple[BaseEstimator | None, np.ndarray, np.ndarray]:
        if self._head is None:
            return None, self._X[fold.train], self._X[fold.test]
        key = np.asarray(fold.train, dtype=np.int64).tobytes()
        if key not in self._fitted:
            head = clone(self._head)
            self._fitted[key] = head, head.fit_transform(self._X[fold.train])  # as Pipeline.fit does, to the bit
        head, train = self._fitted[key]
        return head, train, head.transform(self._X[fold.test])

    def cross_validate(self, y: np.ndarray, folds: list[Fold], progress: bool = False, desc: str = "") -> CVResult:
        """Fit on each fold's training part with labels ``y``; predict its test part.

        With one BLAS thread: PCA's sums then come out the same whatever the machine's core
        count, and permutation workers running side by side do not fight over the cores.
        """
        with threadpool_limits(1, user_api="blas"):
            return self._cross_validate(np.asarray(y), folds, progress, desc)

    def _cross_validate(self, y: np.ndarray, folds: list[Fold], progress: bool, desc: str) -> CVResult:
        fold_proba, models, curves = [], [], {}
        for fold in tqdm(folds, desc=desc, disable=not progress, unit="fold", leave=False):
            head, X_train, X_test = self._inputs(fold)
            model = clone(self._final).fit(X_train, y[fold.train])
            proba = np.zeros((len(fold.test), self._n_classes))
            proba[:, model.classes_] = model.predict_proba(X_test)
            fold_proba.append(proba)
            if hasattr(model, "loss_curve_"):
                curves[fold.name] = list(model.loss_curve_)
            models.append(Pipeline([*head.steps, ("final", model)]) if head is not None else model)
        result = out_of_fold(y, folds, fold_proba)
        result.models, result.loss_curves = models, curves
        return result


# --- metrics ---------------------------------------------------------------------------


def _metric_name(text: str) -> str:
    """A level as a metric-name part: letters, digits, ``_``, ``-``, ``.``; anything else ``_``."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in str(text))


def group_accuracies(correct: np.ndarray, groups: dict[str, np.ndarray], target: Target) -> dict[str, float]:
    """Accuracy within each level of every grouping column but the target's own: ``accuracy_female`` and
    ``accuracy_male`` for sex, ``accuracy_<column>_<level>`` otherwise (``""``: level unknown, left out)."""
    out = {}
    for column, levels in groups.items():
        if column == target.column:
            continue
        for level in sorted(set(levels) - {""}):
            name = {"F": "accuracy_female", "M": "accuracy_male"}[level] if column == "sex" else None
            out[name or f"accuracy_{column}_{_metric_name(level)}"] = float(np.mean(correct[levels == level]))
    return out


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, target: Target, groups: dict[str, np.ndarray]
) -> dict[str, float]:
    """The metrics every model reports, under the same names (NaN where a class is absent).

    Per-class recall, accuracy within the levels of the other grouping columns
    (:func:`group_accuracies`: ``groups`` holds each column's level per recording), and
    for a target made of several factors the accuracy of each (``accuracy_sex``,
    ``accuracy_age`` for the paper's classes).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    correct = y_true == y_pred
    out = {
        "accuracy": float(np.mean(correct)),
        "balanced_accuracy": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }
    out.update(group_accuracies(correct, groups, target))
    if len(target.factors) > 1:
        true, predicted = target.factor_levels(y_true), target.factor_levels(y_pred)
        out.update({f"accuracy_{f}": float(np.mean(true[f] == predicted[f])) for f in target.factors})
    recalls = recall_score(y_true, y_pred, labels=np.arange(len(target.classes)), average=None, zero_division=0)
    for k, name in enumerate(target.classes):
        out[f"recall_{_metric_name(name)}"] = float(recalls[k]) if k in present else np.nan
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows true and columns predicted, in the target's class order (the paper's Table 1: AM, JM, AF, JF)."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def fold_roc_auc(result: CVResult, params: EvaluationParams) -> dict[str, float]:
    """Two classes: ROC AUC of each fold's own test predictions, averaged over the folds whose test
    set holds both classes, with a percentile interval over resampled folds.

    Per fold, because pooling the out-of-fold scores of differently fitted models ranks
    one model's scores against another's, which biases the AUC (Airola et al. 2011).
    """
    aucs = [
        roc_auc_score(result.y_true[fold.test] == 1, result.fold_proba[fold.name][:, 1])
        for fold in result.folds
        if len(np.unique(result.y_true[fold.test])) == 2
    ]
    if not aucs:
        return {"roc_auc": np.nan, "roc_auc_ci_low": np.nan, "roc_auc_ci_high": np.nan, "roc_auc_folds": 0.0}
    aucs = np.array(aucs)
    picks = np.random.default_rng(params.seed).integers(0, len(aucs), size=(params.n_bootstrap, len(aucs)))
    tail = (1 - params.confidence) / 2 * 100
    low, high = np.percentile(aucs[picks].mean(axis=1), [tail, 100 - tail])
    return {
        "roc_auc": float(aucs.mean()),
        "roc_auc_ci_low": float(low),
        "roc_auc_ci_high": float(high),
        "roc_auc_folds": float(len(aucs)),
    }


def bootstrap_accuracy_interval(
    correct: np.ndarray, cages: np.ndarray, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile interval for accuracy, resampling whole cages (mice of a cage are not independent)."""
    _, cage_index = np.unique(cages, return_inverse=True)
    hits = np.bincount(cage_index, weights=np.asarray(correct, dtype=float))
    sizes = np.bincount(cage_index).astype(float)
    picks = np.random.default_rng(seed).integers(0, len(sizes), size=(n_resamples, len(sizes)))
    accuracies = hits[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(accuracies, [tail, 100 - tail])
    return float(low), float(high)


def binomial_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval, which treats the n recordings as independent."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def chance_level(y_true: np.ndarray) -> float:
    """Accuracy of always guessing the most frequent class (0.25 for the paper's balanced design)."""
    return float(np.bincount(y_true).max() / len(y_true))


def significance_threshold(n: int, chance: float, alpha: float) -> float:
    """Smallest accuracy k/n that a guesser at ``chance`` reaches with probability <= alpha."""
    k = int(stats.binom.isf(alpha, n, chance)) + 1
    return k / n


Split = Callable[[np.ndarray], list[Fold]]
"""A scheme's folds as a function of the labels (balanced folds follow the cages' sexes)."""
WORKERS_WORTH_S = 15.0
"""Seconds of permutations worth starting worker processes for (each starts in about 3 s)."""


def _null_accuracies(folded: FoldedModel, split: Split, labelings: list[np.ndarray]) -> list[float]:
    return [folded.cross_validate(y, split(y)).accuracy for y in labelings]


def permutation_null(
    folded: FoldedModel,
    target: Target,
    y: np.ndarray,
    cages: np.ndarray,
    split: Split,
    n_permutations: int,
    seed: int,
    progress: bool = False,
    desc: str = "permutations",
    workers: int = 0,
) -> np.ndarray:
    """Accuracies of the same scheme refitted on design-respecting label permutations.

    The scheme's rule stays fixed and its folds are drawn for each permuted labelling as
    for the real one: balanced folds pair a cage that is male under the permutation with
    one that is female, so every null training set is as balanced as the real ones and
    the null centres on chance. (Keeping the real pairs would hold out two cages of the
    same permuted sex half the time, and pull the null below chance.)

    The labellings are drawn here, in order, and scored in this process or, when the first
    one shows the rest would take over :data:`WORKERS_WORTH_S` seconds, by ``workers``
    processes (0: one per core; spawned, so a CNN's torch threads are never forked; each
    takes seconds to start, importing torch and scikit-learn). The null is the same either way.
    """
    rng = np.random.default_rng(seed)
    labelings = [design_permutation(target, y, cages, rng) for _ in range(n_permutations)]
    with tqdm(total=n_permutations, desc=desc, disable=not progress, unit="perm") as bar:
        start = time.perf_counter()
        null = _null_accuracies(folded, split, labelings[:1])
        bar.update(len(null))
        rest = labelings[1:]
        n = pool_size(len(rest), workers)
        if n == 1 or (time.perf_counter() - start) * len(rest) < WORKERS_WORTH_S:
            for labels in rest:
                null += _null_accuracies(folded, split, [labels])
                bar.update()
            return np.array(null)
        chunks = [list(chunk) for chunk in np.array_split(np.arange(len(rest)), 2 * n) if len(chunk)]
        with ProcessPoolExecutor(n, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_null_accuracies, folded, split, [rest[i] for i in c]): c for c in chunks}
            for future in as_completed(futures):
                bar.update(len(futures[future]))
            return np.array(null + [a for future in futures for a in future.result()])


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + #null): never 0, exact under exchangeability."""
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null))) if len(null) else np.nan


def label_permutation_null(
    target: Target, y_true: np.ndarray, y_pred: np.ndarray, cages: np.ndarray, n_permutations: int, seed: int
) -> np.ndarray:
    """Accuracies of these very predictions against the true labels permuted as the design allows
    (:func:`~lmt_stereotype.design.design_permutation`): what a model that knows nothing of the
    labels would score with the same predictions."""
    rng = np.random.default_rng(seed)
    y_pred = np.asarray(y_pred)
    return np.array([np.mean(design_permutation(target, y_true, cages, rng) == y_pred) for _ in range(n_permutations)])


def below_chance_p_value(
    target: Target, y_true: np.ndarray, y_pred: np.ndarray, cages: np.ndarray, n_permutations: int, seed: int
) -> float:
    """One-sided p-value for accuracy *below* chance: how often these very predictions score as
    low or lower against the true labels permuted as the design allows (:func:`label_permutation_null`).

    Under this null the predictions know nothing of the labels, so it centres on chance
    whatever the training did, and whole cages swap sex, so it is as wide as cage-level
    predictions make it. A scheme whose training sets lean against their test cages
    (leave-one-cage-out on single-sex cages) shows up here. The refitted permutation null
    cannot show it: it shares the scheme's bias (it sat near 0 too on the cohort that
    revealed the problem).
    """
    observed = np.mean(np.asarray(y_true) == np.asarray(y_pred))
    null = label_permutation_null(target, np.asarray(y_true), y_pred, cages, n_permutations, seed)
    return float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_permutations))


def bias_warning(metrics: dict[str, float], confidence: float) -> str | None:
    """The words every surface shows when accuracy is significantly below chance: a biased scheme."""
    p = metrics.get("below_chance_p", np.nan)
    if not p <= 1 - confidence:
        return None
    return (
        f"accuracy {metrics['accuracy']:.3f} is significantly below chance {metrics['chance_level']:.2f} "
        f"(p = {p:.3g}): the scheme is biased on this cohort, the number is not evidence about the mice"
    )


def above_chance(metrics: dict[str, float], confidence: float) -> tuple[bool, str]:
    """Whether cross-validated accuracy is significantly above chance, and the evidence, in words.

    The permutation p-value where there is one (the CNN's fixed settings, the baselines); else
    (the nested-tuned CNN: each permutation would be a whole nested tuning) the cage
    bootstrap interval, whose lower end must lie above chance.
    """
    alpha, chance = 1 - confidence, metrics["chance_level"]
    p = metrics.get("permutation_p_value", np.nan)
    if np.isfinite(p):
        word = "<=" if p <= alpha else ">"
        return bool(p <= alpha), f"permutation p = {p:.3g} {word} {alpha:g}"
    low, high = metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]
    where = "lies above" if low > chance else "reaches"
    return bool(low > chance), f"cage-bootstrap interval [{low:.3f}, {high:.3f}] {where} chance {chance:.2f}"


# --- one model under one scheme -------------------------------------------------------


@dataclass
class Evaluation:
    """Everything reported about one model under one scheme."""

    model: str
    scheme: str
    target: Target
    metrics: dict[str, float]
    confusion: np.ndarray
    predictions: pd.DataFrame
    fold_metrics: dict[str, dict[str, float]]
    loss_curves: dict[str, list[float]]
    null: np.ndarray
    result: CVResult
    warning: str | None = None  # below chance: the scheme is biased (bias_warning)
    tags: dict[str, str] = field(default_factory=dict)  # how the model was made (tuning)
    trials: dict[str, list[dict]] = field(default_factory=dict)  # fold -> tuning trials, when tuned


def summarise(result: CVResult, stacks: Stacks, params: EvaluationParams, null: np.ndarray) -> dict[str, float]:
    """Metrics plus chance level, the intervals and the p-values above and below chance (and, for two
    classes, the per-fold ROC AUC)."""
    y_true, y_pred, cages, target = result.y_true, result.y_pred, stacks.cage, stacks.target
    n, hits = len(y_true), int(np.sum(y_true == y_pred))
    chance = chance_level(y_true)
    metrics = classification_metrics(y_true, y_pred, target, stacks.groups)
    metrics["accuracy_ci_low"], metrics["accuracy_ci_high"] = bootstrap_accuracy_interval(
        y_true == y_pred, cages, params.n_bootstrap, params.confidence, params.seed
    )
    metrics["accuracy_binomial_low"], metrics["accuracy_binomial_high"] = binomial_interval(hits, n, params.confidence)
    metrics["chance_level"] = chance
    metrics["significance_threshold"] = significance_threshold(n, chance, 1 - params.confidence)
    metrics["permutation_p_value"] = permutation_p_value(metrics["accuracy"], null)
    metrics["n_permutations"] = float(len(null))
    metrics["below_chance_p"] = below_chance_p_value(
        target, y_true, y_pred, cages, params.chance_permutations, params.seed
    )
    if len(target.classes) == 2:
        metrics.update(fold_roc_auc(result, params))
    metrics["n_recordings"] = float(n)
    metrics["n_cages"] = float(len(np.unique(cages)))
    return metrics


def predictions_table(stacks: Stacks, result: CVResult) -> pd.DataFrame:
    """One row per recording: who it is, its fold(s), true and predicted class, class probabilities."""
    table = pd.DataFrame(
        {
            "recording": stacks.recording,
            "animal_id": stacks.animal_id,
            "cage": stacks.cage,
            "fold": result.fold,
            "true": stacks.target.names(result.y_true),
            "predicted": stacks.target.names(result.y_pred),
        }
    )
    for k, name in enumerate(stacks.classes):
        table[f"p_{name}"] = result.proba[:, k].round(6)
    return table


def evaluate(
    model: str,
    make_estimator: Callable[[], BaseEstimator],
    stacks: Stacks,
    scheme: str,
    params: EvaluationParams,
    n_permutations: int,
    progress: bool = False,
    tags: dict[str, str] | None = None,
    workers: int = 0,
) -> Evaluation:
    """Cross-validate one model under one scheme, with ``n_permutations`` design permutations
    for its p-value (none under the leaky K-fold, where labels are not exchangeable by cage)
    scored by ``workers`` processes (0: one per core); ``tags`` say how the model was made."""
    split = partial(make_folds, scheme, stacks.cage, params, stacks.target)
    folds = split(stacks.y)
    folded = FoldedModel(make_estimator(), stacks.X, len(stacks.classes))
    result = folded.cross_validate(stacks.y, folds, progress=progress, desc=f"{model} {scheme}")
    n_permutations = 0 if scheme == "kfold" else n_permutations
    null = permutation_null(
        folded,
        stacks.target,
        stacks.y,
        stacks.cage,
        split,
        n_permutations,
        params.seed,
        progress,
        f"{model} permutations",
        workers,
    )
    evaluation = build_evaluation(model, scheme, stacks, folds, result, params, null)
    evaluation.tags.update(tags or {})
    return evaluation


def build_evaluation(
    model: str,
    scheme: str,
    stacks: Stacks,
    folds: list[Fold],
    result: CVResult,
    params: EvaluationParams,
    null: np.ndarray,
) -> Evaluation:
    """The :class:`Evaluation` of out-of-fold predictions: everything reported about them, whichever
    way they were made."""
    y = stacks.y
    metrics = summarise(result, stacks, params, null)
    return Evaluation(
        model=model,
        scheme=scheme,
        target=stacks.target,
        metrics=metrics,
        confusion=confusion(y, result.y_pred, len(stacks.classes)),
        predictions=predictions_table(stacks, result),
        fold_metrics={
            f.name: classification_metrics(
                y[f.test], result.fold_predictions[f.name], stacks.target, stacks.subset(f.test).groups
            )
            for f in folds
        },
        loss_curves=result.loss_curves,
        null=null,
        result=result,
        warning=bias_warning(metrics, params.confidence),
    )


def write_reports(evaluation: Evaluation, folder: Path) -> list[Path]:
    """The files of one evaluation: metrics, confusion matrix (JSON, figure), predictions, folds, null."""
    folder = Path(folder)
    name = f"{evaluation.model} ({SCHEMES[evaluation.scheme]})"
    files = {
        "metrics": folder / "metrics.json",
        "confusion": folder / "confusion.json",
        "figure": folder / "confusion.png",
        "predictions": folder / "predictions.csv",
        "folds": folder / "folds.csv",
    }
    write_json(evaluation.metrics, files["metrics"])
    write_json(
        {
            "target": evaluation.target.column,
            "classes": list(evaluation.target.classes),
            "rows": "true",
            "columns": "predicted",
            "counts": evaluation.confusion,
        },
        files["confusion"],
    )
    confusion_figure(
        evaluation.confusion, evaluation.target.classes, name, evaluation.metrics, files["figure"], evaluation.warning
    )
    write_table(evaluation.predictions, files["predictions"])
    write_table(
        pd.DataFrame.from_dict(evaluation.fold_metrics, orient="index").rename_axis("fold").reset_index(),
        files["folds"],
    )
    if len(evaluation.null):
        files["null"] = folder / "permutation_null.csv"
        write_table(pd.DataFrame({"accuracy": evaluation.null}), files["null"])
    if evaluation.loss_curves:
        curves = pd.DataFrame({fold: pd.Series(v) for fold, v in evaluation.loss_curves.items()})  # tuned: lengths vary
        curves.insert(0, "epoch", np.arange(1, len(curves) + 1))
        curves["mean"] = curves.drop(columns="epoch").mean(axis=1, skipna=False)  # only where every fold trains
        files["loss"] = folder / "loss.csv"
        write_table(curves.round(6), files["loss"])
        files["loss_figure"] = folder / "loss.png"
        loss_figure(curves, f"{name}: training loss", files["loss_figure"])
    return list(files.values())
