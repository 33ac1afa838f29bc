"""Honest evaluation: cage folds, out-of-fold predictions, metrics with their uncertainty.

Mice of a cage share strong traits, so the unit of generalisation is the cage: the
leave-one-cage-out scheme holds out all of a cage's recordings at once, intervals
resample cages, and the permutation test shuffles labels only where the design makes
them exchangeable (sex across cages, age within a cage). A plain stratified K-fold is
offered too, to show how much cage leakage inflates accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from tqdm import tqdm

from lmt_stereotype.config import CLASSES, EvaluationParams
from lmt_stereotype.figures import confusion_figure, loss_figure
from lmt_stereotype.files import write_json, write_table
from lmt_stereotype.histograms import Stacks

SCHEMES = {"loco": "leave-one-cage-out", "kfold": "stratified K-fold, cages ignored"}
FEMALE = np.array([c.endswith("F") for c in CLASSES])
JUVENILE = np.array([c.startswith("J") for c in CLASSES])


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray
    test: np.ndarray


def leave_one_cage_out(cages: np.ndarray) -> list[Fold]:
    """One fold per cage, its recordings (every mouse at every age) all held out together."""
    cages = np.asarray(cages)
    return [Fold(str(cage), np.flatnonzero(cages != cage), np.flatnonzero(cages == cage)) for cage in np.unique(cages)]


def stratified_kfold(y: np.ndarray, n_splits: int, seed: int) -> list[Fold]:
    """Class-stratified folds that ignore cages: cage-mates land on both sides (the leak to measure)."""
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [Fold(f"fold{i:02d}", train, test) for i, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y))]


def make_folds(scheme: str, stacks: Stacks, params: EvaluationParams) -> list[Fold]:
    if scheme == "loco":
        return leave_one_cage_out(stacks.cage)
    return stratified_kfold(stacks.y, params.kfold_splits, params.seed)


@dataclass
class CVResult:
    """Out-of-fold predictions of one model under one scheme."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray  # (n, len(CLASSES))
    fold: np.ndarray  # fold name of each recording
    models: list[BaseEstimator] = field(default_factory=list)  # fitted, one per fold
    loss_curves: dict[str, list[float]] = field(default_factory=dict)  # fold -> per-epoch loss

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_true == self.y_pred))


class FoldedModel:
    """An estimator ready to be fitted on every fold, many times over (label permutations).

    Pipeline steps before the last one ignore the labels (flattening, scaling, PCA), so
    they are fitted once per fold, on that fold's training recordings only, and reused
    for every labelling; only the final classifier is refitted. The result is exactly
    what fitting the whole pipeline per fold would give.
    """

    def __init__(self, estimator: BaseEstimator, X: np.ndarray, folds: list[Fold]):
        self.folds = folds
        self._X = X
        if isinstance(estimator, Pipeline) and len(estimator) > 1:
            self._final = estimator[-1]
            self._heads, self._inputs = [], []
            for fold in folds:
                head = clone(estimator[:-1])
                train = head.fit_transform(X[fold.train])  # as Pipeline.fit does, to the last bit
                self._heads.append(head)
                self._inputs.append((train, head.transform(X[fold.test])))
        else:
            self._final, self._heads, self._inputs = estimator, [], []

    def _data(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._inputs:
            return self._inputs[k]
        return self._X[self.folds[k].train], self._X[self.folds[k].test]

    def run(self, y: np.ndarray, progress: bool = False, desc: str = "", proba: bool = True) -> CVResult:
        """Fit on each fold's training part with labels ``y``; predict its test part (``proba``: and probabilities)."""
        n = len(y)
        y_pred = np.full(n, -1, dtype=np.int64)
        probabilities = np.full((n, len(CLASSES)), np.nan if not proba else 0.0)
        fold_of = np.empty(n, dtype=object)
        result = CVResult(np.asarray(y), y_pred, probabilities, fold_of)
        for k, fold in enumerate(tqdm(self.folds, desc=desc, disable=not progress, unit="fold", leave=False)):
            X_train, X_test = self._data(k)
            model = clone(self._final).fit(X_train, y[fold.train])
            y_pred[fold.test] = model.predict(X_test)
            if proba:
                probabilities[np.ix_(fold.test, model.classes_)] = model.predict_proba(X_test)
            fold_of[fold.test] = fold.name
            if hasattr(model, "loss_curve_"):
                result.loss_curves[fold.name] = list(model.loss_curve_)
            result.models.append(Pipeline([*self._heads[k].steps, ("final", model)]) if self._heads else model)
        return result


# --- metrics ---------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics every model reports, under the same names (NaN where a class is absent)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    female = FEMALE[y_true]
    out = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "accuracy_female": float(np.mean((y_true == y_pred)[female])) if female.any() else np.nan,
        "accuracy_male": float(np.mean((y_true == y_pred)[~female])) if (~female).any() else np.nan,
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "accuracy_sex": float(np.mean(FEMALE[y_true] == FEMALE[y_pred])),
        "accuracy_age": float(np.mean(JUVENILE[y_true] == JUVENILE[y_pred])),
    }
    recalls = recall_score(y_true, y_pred, labels=np.arange(len(CLASSES)), average=None, zero_division=0)
    for k, name in enumerate(CLASSES):
        out[f"recall_{name}"] = float(recalls[k]) if k in present else np.nan
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """4 x 4 counts, rows true and columns predicted, in the order AM, JM, AF, JF (the paper's Table 1)."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(len(CLASSES)))


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
    """Accuracy of always guessing the most frequent class (0.25 for the balanced design)."""
    return float(np.bincount(y_true, minlength=len(CLASSES)).max() / len(y_true))


def significance_threshold(n: int, chance: float, alpha: float) -> float:
    """Smallest accuracy k/n that a guesser at ``chance`` reaches with probability <= alpha."""
    k = int(stats.binom.isf(alpha, n, chance)) + 1
    return k / n


def design_permutation(y: np.ndarray, cages: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels shuffled where the design makes them exchangeable, and nowhere else.

    Sex is a property of the cage (cages are single-sex), so whole cages swap sex; age
    varies within a cage, so ages are shuffled among the cage's recordings. Shuffling
    full labels within cages instead would keep every cage's sex and leave a cage-level
    classifier's null distribution equal to its score (p = 1 always). In a mixed-sex
    cage sex is shuffled within the cage.
    """
    y, cages = np.asarray(y), np.asarray(cages)
    female, juvenile = FEMALE[y].copy(), JUVENILE[y].copy()
    names = np.unique(cages)
    members = [np.flatnonzero(cages == c) for c in names]
    single_sex = [idx for idx in members if female[idx].all() or not female[idx].any()]
    if single_sex:
        cage_sex = np.array([female[idx[0]] for idx in single_sex])[rng.permutation(len(single_sex))]
        for idx, sex in zip(single_sex, cage_sex):
            female[idx] = sex
    for idx in members:
        juvenile[idx] = juvenile[idx][rng.permutation(len(idx))]
        if not (female[idx].all() or not female[idx].any()):
            female[idx] = female[idx][rng.permutation(len(idx))]
    return 2 * female.astype(np.int64) + juvenile.astype(np.int64)


def permutation_null(
    folded: FoldedModel,
    y: np.ndarray,
    cages: np.ndarray,
    n_permutations: int,
    seed: int,
    progress: bool = False,
    desc: str = "permutations",
) -> np.ndarray:
    """Accuracies of the same folds refitted on design-respecting label permutations."""
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for i in tqdm(range(n_permutations), desc=desc, disable=not progress, unit="perm"):
        permuted = design_permutation(y, cages, rng)
        null[i] = np.mean(folded.run(permuted, proba=False).y_pred == permuted)
    return null


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + #null): never 0, exact under exchangeability."""
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null))) if len(null) else np.nan


# --- one model under one scheme -------------------------------------------------------


@dataclass
class Evaluation:
    """Everything reported about one model under one scheme."""

    model: str
    scheme: str
    metrics: dict[str, float]
    confusion: np.ndarray
    predictions: pd.DataFrame
    fold_metrics: dict[str, dict[str, float]]
    loss_curves: dict[str, list[float]]
    null: np.ndarray
    result: CVResult
    trials: dict[str, list[dict]] = field(default_factory=dict)  # fold -> tuning trials, when tuned


def summarise(result: CVResult, cages: np.ndarray, params: EvaluationParams, null: np.ndarray) -> dict[str, float]:
    """Metrics plus chance level, the intervals and the permutation p-value."""
    y_true, y_pred = result.y_true, result.y_pred
    n, hits = len(y_true), int(np.sum(y_true == y_pred))
    chance = chance_level(y_true)
    metrics = classification_metrics(y_true, y_pred)
    metrics["accuracy_ci_low"], metrics["accuracy_ci_high"] = bootstrap_accuracy_interval(
        y_true == y_pred, cages, params.n_bootstrap, params.confidence, params.seed
    )
    metrics["accuracy_binomial_low"], metrics["accuracy_binomial_high"] = binomial_interval(hits, n, params.confidence)
    metrics["chance_level"] = chance
    metrics["significance_threshold"] = significance_threshold(n, chance, 1 - params.confidence)
    metrics["permutation_p_value"] = permutation_p_value(metrics["accuracy"], null)
    metrics["n_permutations"] = float(len(null))
    metrics["n_recordings"] = float(n)
    metrics["n_cages"] = float(len(np.unique(cages)))
    return metrics


def predictions_table(stacks: Stacks, result: CVResult) -> pd.DataFrame:
    """One row per recording: who it is, its fold, true and predicted class, class probabilities."""
    table = pd.DataFrame(
        {
            "recording": stacks.recording,
            "animal_id": stacks.animal_id,
            "cage": stacks.cage,
            "fold": result.fold,
            "true": np.array(CLASSES)[result.y_true],
            "predicted": np.array(CLASSES)[result.y_pred],
        }
    )
    for k, name in enumerate(CLASSES):
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
) -> Evaluation:
    """Cross-validate one model under one scheme.

    The permutation test runs on the leave-one-cage-out folds only (kept fixed, as the
    design requires); under the leaky K-fold scheme its p-value is left undefined (NaN).
    """
    folds = make_folds(scheme, stacks, params)
    folded = FoldedModel(make_estimator(), stacks.X, folds)
    y = stacks.y
    result = folded.run(y, progress=progress, desc=f"{model} {scheme}")
    n_permutations = n_permutations if scheme == "loco" else 0
    null = permutation_null(folded, y, stacks.cage, n_permutations, params.seed, progress, desc=f"{model} permutations")
    return report(model, scheme, stacks, folds, result, params, null)


def report(
    model: str,
    scheme: str,
    stacks: Stacks,
    folds: list[Fold],
    result: CVResult,
    params: EvaluationParams,
    null: np.ndarray,
) -> Evaluation:
    """Everything reported about out-of-fold predictions, whichever way they were made."""
    y = stacks.y
    return Evaluation(
        model=model,
        scheme=scheme,
        metrics=summarise(result, stacks.cage, params, null),
        confusion=confusion(y, result.y_pred),
        predictions=predictions_table(stacks, result),
        fold_metrics={f.name: classification_metrics(y[f.test], result.y_pred[f.test]) for f in folds},
        loss_curves=result.loss_curves,
        null=null,
        result=result,
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
        {"classes": list(CLASSES), "rows": "true", "columns": "predicted", "counts": evaluation.confusion},
        files["confusion"],
    )
    confusion_figure(evaluation.confusion, name, evaluation.metrics, files["figure"])
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
