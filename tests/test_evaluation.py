"""Honest evaluation: cage folds that never leak, out-of-fold predictions, metrics and their uncertainty."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers.params import DEMO, varied
from scipy import stats
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score

from lmt_stereotype.design import cage_strata, design_permutation
from lmt_stereotype.evaluation import (
    Fold,
    FoldedModel,
    above_chance,
    balanced_cage_folds,
    below_chance_p_value,
    bias_warning,
    binomial_interval,
    bootstrap_accuracy_interval,
    chance_level,
    classification_metrics,
    confusion,
    evaluate,
    fold_roc_auc,
    held_out_models,
    leave_one_cage_out,
    make_folds,
    out_of_fold,
    permutation_null,
    permutation_p_value,
    significance_threshold,
    stratified_kfold,
    write_reports,
)
from lmt_stereotype.histograms import Stacks
from lmt_stereotype.labels import PAPER_CLASSES, Target
from lmt_stereotype.models import make_baseline

N_CAGES, PER_CAGE = 6, 8
FAST = varied(DEMO.evaluation, kfold_splits=4, n_bootstrap=200, chance_permutations=200)
TABLE_1 = np.array([[22, 2, 0, 0], [9, 8, 1, 6], [0, 4, 20, 0], [0, 0, 0, 24]])  # the paper's confusion matrix
PAPER = Target.of("class", PAPER_CLASSES)
SEX = Target.of("sex", ["M", "F"])
AGE = Target.of("age", ["adult", "juvenile"])


def female(target: Target, y: np.ndarray) -> np.ndarray:
    """Whether each label is female (the paper's classes or sex)."""
    return target.factor_levels(y)["sex"] == "F"


def juvenile(target: Target, y: np.ndarray) -> np.ndarray:
    return target.factor_levels(y)["age"] == "juvenile"


def groups_of(y: np.ndarray) -> dict[str, np.ndarray]:
    """The grouping columns ``histograms`` keeps for the paper's classes ``y``: sex and age per recording."""
    return {factor: levels.astype(str) for factor, levels in PAPER.factor_levels(y).items()}


def tiny_stacks(seed: int = 0, n_cages: int = N_CAGES, column: str = "class") -> Stacks:
    """Single-sex cages (first half male) of 4 mice, each recorded as a juvenile and as an adult;
    labelled for ``column`` (``class``, ``sex`` or ``age``), sex and age kept as grouping columns."""
    rng = np.random.default_rng(seed)
    sexes, ages, cage, recording, animal_id, sample = [], [], [], [], [], []
    for c in range(n_cages):
        sex = "M" if c < n_cages // 2 else "F"
        for age in ("juvenile", "adult"):
            for mouse in range(1, 5):
                sexes.append(sex)
                ages.append(age)
                cage.append(f"c{c}")
                recording.append(f"c{c}-{age[0].upper()}")
                animal_id.append(mouse)
                sample.append(f"c{c}-{age[0].upper()}-{mouse}")
    n = len(sexes)
    groups = {"sex": np.array(sexes), "age": np.array(ages)}
    labels = {"class": np.array([a[0].upper() + s for s, a in zip(sexes, ages)]), **groups}[column]
    target = Target.of(column, labels)
    return Stacks(
        X=rng.poisson(2.0, size=(n, 2, 6, 6)).astype(np.float32),
        label=labels,
        classes=target.classes,
        target_column=column,
        groups=groups,
        cage=np.array(cage),
        recording=np.array(recording),
        animal_id=np.array(animal_id, dtype=np.int64),
        sample=np.array(sample),
        identity=np.char.add("id-", np.array(recording)),
        interval_s=1.0,
        start_hour=np.full(n, 10.0),
        seconds_per_hour=3600.0,
    )


@pytest.fixture(scope="module")
def stacks() -> Stacks:
    return tiny_stacks()


def knn(scaling: str = "none"):
    return make_baseline("knn", varied(DEMO.baselines, scaling=scaling))


def from_table(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y_true, y_pred with the given confusion counts (rows true, columns predicted)."""
    pairs = [(i, j) for i in range(len(matrix)) for j in range(len(matrix)) for _ in range(matrix[i, j])]
    y_true, y_pred = np.array(pairs).T
    return y_true, y_pred


def sex_of_cages(target: Target, y: np.ndarray, cages: np.ndarray) -> dict[str, set[bool]]:
    return {c: set(female(target, y)[cages == c].tolist()) for c in np.unique(cages)}


def design(n_male: int, n_female: int, n_mixed: int = 0, target: Target = PAPER) -> tuple[np.ndarray, np.ndarray]:
    """Cages of 4 recordings (2 juveniles, 2 adults): labels ``y`` of ``target`` (the paper's classes or sex)
    and ``cages``; a mixed cage holds 2 of each sex."""
    sexes = [False] * n_male + [True] * n_female + [None] * n_mixed
    is_female = np.concatenate([[s] * 4 if s is not None else [False, True, False, True] for s in sexes]).astype(bool)
    cages = np.repeat([f"k{c:02d}" for c in range(len(sexes))], 4)
    if target.is_paper:
        y = 2 * is_female.astype(np.int64) + np.tile([0, 0, 1, 1], len(sexes))
    else:
        y = target.indices(np.where(is_female, "F", "M"))
    return y, cages


def held_out_cages(fold: Fold, cages: np.ndarray) -> set[str]:
    return set(cages[fold.test].tolist())


def cage_counts(index: np.ndarray, target: Target, y: np.ndarray, cages: np.ndarray) -> tuple[int, int]:
    """(male cages, female cages) among the single-sex cages of these recordings (folds hold whole cages)."""
    strata, _ = cage_strata(target, y, cages)
    present = set(cages[index].tolist())
    return len(present & set(strata.get("M", []))), len(present & set(strata.get("F", [])))


BOTH = pytest.mark.parametrize("target", [PAPER, SEX], ids=["class", "sex"])
"""The paper's four classes and sex alone: the same single-sex cages, the same balanced folds."""


# --- folds ----------------------------------------------------------------------------


def test_the_tiny_design_is_balanced_and_single_sex(stacks):
    assert stacks.X.shape == (48, 2, 6, 6)
    assert stacks.target == PAPER and stacks.classes == PAPER_CLASSES
    assert np.bincount(stacks.y).tolist() == [12, 12, 12, 12]
    assert all(len(sexes) == 1 for sexes in sex_of_cages(PAPER, stacks.y, stacks.cage).values())


def test_leave_one_cage_out_has_one_fold_per_cage_and_never_trains_on_the_test_cage(stacks):
    folds = leave_one_cage_out(stacks.cage)
    assert [f.name for f in folds] == [f"c{c}" for c in range(N_CAGES)]
    for fold in folds:
        assert len(fold.test) == PER_CAGE
        assert set(stacks.cage[fold.test]) == {fold.name}
        assert not set(stacks.cage[fold.test]) & set(stacks.cage[fold.train])
        assert not set(fold.train) & set(fold.test)
        assert len(fold.train) + len(fold.test) == len(stacks.y)
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(len(stacks.y)))  # a partition: every recording tested once


def test_the_cages_strata_are_the_levels_of_the_cage_factors():
    y, cages = design(3, 3, n_mixed=2)
    males, females, mixed = ["k00", "k01", "k02"], ["k03", "k04", "k05"], ["k06", "k07"]
    assert cage_strata(PAPER, y, cages) == ({"M": males, "F": females}, mixed)  # sex: a cage factor; age is not
    y_sex, _ = design(3, 3, n_mixed=2, target=SEX)
    assert cage_strata(SEX, y_sex, cages) == ({"M": males, "F": females}, mixed)
    y_age = AGE.indices(PAPER.factor_levels(y)["age"])  # age varies within every cage: one stratum
    assert cage_strata(AGE, y_age, cages) == ({"all": [*males, *females, *mixed]}, [])


@BOTH
def test_balanced_folds_hold_out_a_male_and_a_female_cage_and_keep_every_training_set_balanced(target):
    y, cages = design(6, 6, target=target)
    folds = balanced_cage_folds(cages, target, y, matchings=2, seed=0)
    assert len(folds) == 12  # 2 matchings of 6 pairs
    for fold in folds:
        assert cage_counts(fold.test, target, y, cages) == (1, 1)
        assert cage_counts(fold.train, target, y, cages) == (5, 5)
        assert set(y[fold.train]) == set(range(len(target.classes)))  # every class in every training set
        assert not held_out_cages(fold, cages) & set(cages[fold.train])  # checked on the indices
        assert sorted([*fold.train, *fold.test]) == list(range(len(cages)))
    for matching in (folds[:6], folds[6:]):
        tested = np.concatenate([f.test for f in matching])
        assert sorted(tested.tolist()) == list(range(len(cages)))  # each matching tests every cage once
    pairs = [frozenset(held_out_cages(f, cages)) for f in folds]
    assert len(set(pairs)) == 12  # the second matching pairs every cage with another partner


def test_the_paper_and_the_sex_target_get_the_same_balanced_folds():
    y, cages = design(4, 3)
    y_sex, _ = design(4, 3, target=SEX)
    paper, sex = (
        balanced_cage_folds(cages, t, labels, matchings=2, seed=5) for t, labels in ((PAPER, y), (SEX, y_sex))
    )
    assert [(f.name, f.test.tolist()) for f in paper] == [(f.name, f.test.tolist()) for f in sex]


def test_as_many_matchings_as_cages_of_a_sex_hold_out_every_male_female_pair_once():
    y, cages = design(4, 4)
    folds = balanced_cage_folds(cages, PAPER, y, matchings=4, seed=3)
    pairs = {frozenset(held_out_cages(f, cages)) for f in folds}
    is_female = female(PAPER, y)
    males, females = np.unique(cages[~is_female]), np.unique(cages[is_female])
    assert len(folds) == 16 and pairs == {frozenset({m, f}) for m in males for f in females}  # leave-pair-out
    assert len(balanced_cage_folds(cages, PAPER, y, matchings=99, seed=3)) == 16  # no pair twice


def test_balanced_folds_are_reproducible_for_a_seed_and_change_with_it():
    y, cages = design(6, 6)

    def pairs(seed: int) -> list[set[str]]:
        return [held_out_cages(f, cages) for f in balanced_cage_folds(cages, PAPER, y, seed=seed)]

    assert pairs(1) == pairs(1) and pairs(1) != pairs(2)


@BOTH
def test_unequal_sexes_reuse_the_smaller_sexs_cages_so_each_fold_still_holds_out_one_of_each(target):
    y, cages = design(4, 3, target=target)
    folds = balanced_cage_folds(cages, target, y, matchings=1, seed=0)
    assert len(folds) == 4  # one fold per cage of the larger sex
    for fold in folds:
        assert cage_counts(fold.test, target, y, cages) == (1, 1)
        assert cage_counts(fold.train, target, y, cages) == (3, 2)  # the cohort's imbalance, never tilted further
    assert set(cages) == set().union(*(held_out_cages(f, cages) for f in folds))
    every_pair = balanced_cage_folds(cages, target, y, matchings=3, seed=0)
    assert len({frozenset(held_out_cages(f, cages)) for f in every_pair}) == 12


@BOTH
def test_mixed_sex_cages_are_dealt_over_the_folds_beside_a_single_sex_pair(target):
    y, cages = design(3, 3, n_mixed=2, target=target)
    assert len(cage_strata(target, y, cages)[1]) == 2
    folds = balanced_cage_folds(cages, target, y, seed=0)
    assert len(folds) == 3
    mixed = [len(held_out_cages(f, cages)) - 2 for f in folds]
    assert sorted(mixed) == [0, 1, 1]  # each mixed cage held out once, beside a male and a female cage
    assert all(cage_counts(f.test, target, y, cages) == (1, 1) for f in folds)


@BOTH
def test_a_one_sex_or_all_mixed_cohort_gets_one_fold_per_cage(target):
    for y, cages in (design(5, 0, target=target), design(0, 0, n_mixed=4, target=target)):
        folds = balanced_cage_folds(cages, target, y, matchings=3, seed=0)
        assert sorted(tuple(held_out_cages(f, cages)) for f in folds) == [(c,) for c in np.unique(cages)]


def test_a_target_that_varies_within_every_cage_gets_one_fold_per_cage_with_every_class_in_training(stacks):
    age = tiny_stacks(column="age")
    assert age.classes == ("adult", "juvenile") and age.target == AGE
    folds = make_folds("balanced", age.cage, FAST.model_copy(update={"matchings": 3}), age.target, age.y)
    assert sorted(tuple(held_out_cages(f, age.cage)) for f in folds) == [(c,) for c in np.unique(age.cage)]
    for fold in folds:
        assert not held_out_cages(fold, age.cage) & set(age.cage[fold.train])
        assert set(age.y[fold.train]) == {0, 1}


@BOTH
def test_balanced_folds_refuse_a_sex_with_a_single_cage(target):
    y, cages = design(6, 1, target=target)
    with pytest.raises(ValueError, match="at least 2 cages of each sex, the cohort has 6 M and 1 F cages"):
        balanced_cage_folds(cages, target, y)


@BOTH
def test_k_balanced_folds_deal_each_sex_over_the_folds(target):
    y, cages = design(5, 5, target=target)
    folds = balanced_cage_folds(cages, target, y, n_folds=3, seed=0)
    assert [f.name for f in folds] == ["inner0", "inner1", "inner2"]
    assert sorted(cage_counts(f.test, target, y, cages) for f in folds) == [(1, 1), (2, 2), (2, 2)]
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(cages)))


def test_the_balanced_schemes_folds_follow_the_labels_they_are_drawn_for(stacks):
    rng = np.random.default_rng(0)
    draws = (design_permutation(PAPER, stacks.y, stacks.cage, rng) for _ in range(20))
    original = sex_of_cages(PAPER, stacks.y, stacks.cage)
    permuted = next(p for p in draws if sex_of_cages(PAPER, p, stacks.cage) != original)
    for fold in make_folds("balanced", stacks.cage, FAST, PAPER, permuted):
        assert cage_counts(fold.test, PAPER, permuted, stacks.cage) == (1, 1)


def test_stratified_kfold_puts_cage_mates_on_both_sides_and_is_stratified(stacks):
    folds = stratified_kfold(stacks.y, 4, seed=0)
    assert len(folds) == 4
    leaky = [f for f in folds if set(stacks.cage[f.test]) & set(stacks.cage[f.train])]
    assert leaky  # the leak this scheme exists to measure
    for fold in folds:
        assert np.bincount(stacks.y[fold.test], minlength=4).tolist() == [3, 3, 3, 3]
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(stacks.y)))


def test_stratified_kfold_is_reproducible_for_a_seed(stacks):
    a, b = stratified_kfold(stacks.y, 4, seed=5), stratified_kfold(stacks.y, 4, seed=5)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b))


# --- fitting per fold -----------------------------------------------------------------


def test_nothing_is_fitted_on_the_held_out_cage(stacks):
    folds = leave_one_cage_out(stacks.cage)
    result = FoldedModel(knn("standard"), stacks.X, 4).cross_validate(stacks.y, folds)
    flat = stacks.X.reshape(len(stacks.X), -1).astype(np.float32)
    assert len(result.models) == len(folds)
    for fold, model in zip(folds, result.models):
        scaler, pca = model.named_steps["scale"], model.named_steps["pca"]
        train = flat[fold.train]
        assert scaler.n_samples_seen_ == pca.n_samples_ == len(fold.train)
        np.testing.assert_allclose(scaler.mean_, train.mean(axis=0), rtol=1e-5, atol=1e-6)
        assert not np.allclose(scaler.mean_, flat.mean(axis=0))
        scaled = scaler.transform(train)
        np.testing.assert_allclose(pca.mean_, scaled.mean(axis=0), atol=1e-6)
        reference = PCA(n_components=3, random_state=0).fit(scaled)
        np.testing.assert_allclose(pca.explained_variance_, reference.explained_variance_, rtol=1e-5)
        everything = PCA(n_components=3, random_state=0).fit(scaler.transform(flat))
        assert not np.allclose(pca.explained_variance_, everything.explained_variance_, rtol=1e-3)


def test_without_scaling_pca_centres_on_the_training_cages_only(stacks):
    folds = leave_one_cage_out(stacks.cage)
    result = FoldedModel(knn(), stacks.X, 4).cross_validate(stacks.y, folds)
    flat = stacks.X.reshape(len(stacks.X), -1)
    for fold, model in zip(folds, result.models):
        pca = model.named_steps["pca"]
        np.testing.assert_allclose(pca.mean_, flat[fold.train].mean(axis=0), rtol=1e-5, atol=1e-6)
        assert not np.allclose(pca.mean_, flat.mean(axis=0))


@pytest.mark.parametrize("kind, scaling", [("knn", "none"), ("knn", "standard"), ("svm", "none")])
def test_folded_model_predicts_exactly_like_refitting_the_whole_pipeline_per_fold(stacks, kind, scaling):
    pipeline = make_baseline(kind, varied(DEMO.baselines, scaling=scaling))
    folds = leave_one_cage_out(stacks.cage)
    result = FoldedModel(pipeline, stacks.X, 4).cross_validate(stacks.y, folds)
    y_pred = np.full(len(stacks.y), -1)
    proba = np.zeros((len(stacks.y), len(PAPER_CLASSES)))
    for fold in folds:
        fresh = clone(pipeline).fit(stacks.X[fold.train], stacks.y[fold.train])
        y_pred[fold.test] = fresh.predict(stacks.X[fold.test])
        proba[np.ix_(fold.test, fresh.classes_)] = fresh.predict_proba(stacks.X[fold.test])
    np.testing.assert_array_equal(result.y_pred, y_pred)
    # the pipeline's PCA.fit_transform and FoldedModel's fit().transform() differ by float32 rounding (~1e-6)
    np.testing.assert_allclose(result.proba, proba, atol=1e-4)
    assert result.fold.tolist() == stacks.cage.tolist()


def test_folded_model_refits_only_the_classifier_for_new_labels(stacks):
    folds = leave_one_cage_out(stacks.cage)
    folded = FoldedModel(knn("standard"), stacks.X, 4)
    first = folded.cross_validate(stacks.y, folds)
    permuted = design_permutation(PAPER, stacks.y, stacks.cage, np.random.default_rng(1))
    result = folded.cross_validate(permuted, folds)
    for fold, before, after in zip(folds, first.models, result.models):
        fresh = clone(knn("standard")).fit(stacks.X[fold.train], permuted[fold.train])
        np.testing.assert_array_equal(result.fold_predictions[fold.name], fresh.predict(stacks.X[fold.test]))
        assert after.named_steps["pca"] is before.named_steps["pca"]  # fitted once per training set


def test_a_recording_tested_by_several_folds_gets_their_probabilities_averaged():
    y = np.array([0, 1, 2])
    folds = [Fold("a", np.array([2]), np.array([0, 1])), Fold("b", np.array([2]), np.array([0, 1]))]
    proba = [np.array([[0.6, 0.4, 0, 0], [0.5, 0.5, 0, 0]]), np.array([[0.2, 0.8, 0, 0], [0.5, 0.5, 0, 0]])]
    with pytest.raises(ValueError, match="1 recordings are tested by no fold"):
        out_of_fold(y, folds, proba)
    folds.append(Fold("c", np.array([0, 1]), np.array([2])))
    result = out_of_fold(y, folds, [*proba, np.array([[0, 0, 0.9, 0.1]])])
    np.testing.assert_allclose(result.proba[0], [0.4, 0.6, 0, 0])
    assert result.y_pred.tolist() == [1, 0, 2]  # recording 1: a tie, settled by the first fold's choice (class 0)
    assert result.fold.tolist() == ["a;b", "a;b", "c"]
    assert result.fold_predictions["a"].tolist() == [0, 0] and result.fold_predictions["b"].tolist() == [1, 0]
    np.testing.assert_array_equal(result.fold_proba["b"], proba[1])  # each fold's own probabilities, kept


def test_each_cage_gets_the_model_of_the_first_fold_that_held_it_out(stacks):
    folds = make_folds("balanced", stacks.cage, FAST.model_copy(update={"matchings": 2}), PAPER, stacks.y)
    result = FoldedModel(knn(), stacks.X, 4).cross_validate(stacks.y, folds)
    models = held_out_models(result, stacks.cage)
    assert sorted(models) == sorted(set(stacks.cage))
    for cage, model in models.items():
        k = next(i for i, f in enumerate(folds) if cage in set(stacks.cage[f.test]))
        assert model is result.models[k] and k < len(folds) // 2  # the first matching
        assert cage not in set(stacks.cage[folds[k].train])


# --- the bias balanced folds remove ---------------------------------------------------


def prior_follower() -> DummyClassifier:
    """A classifier that has learnt nothing but its training set's class balance."""
    return DummyClassifier(strategy="prior")


def test_a_model_that_follows_its_training_balance_anti_learns_under_loco_and_is_at_chance_when_balanced():
    """Leaving out a male cage leaves more female recordings in training: all predicted female.
    (8 cages: with 6, even all cages wrong is 1 of only 20 ways to assign their sexes, p = 0.05.)"""
    stacks = tiny_stacks(n_cages=8)
    loco = evaluate("prior", prior_follower, stacks, "loco", FAST, n_permutations=9, workers=1)
    balanced = evaluate("prior", prior_follower, stacks, "balanced", FAST, n_permutations=9, workers=1)
    assert loco.metrics["accuracy"] == 0.0 and loco.metrics["accuracy_sex"] == 0.0
    assert balanced.metrics["accuracy"] == 0.25 == balanced.metrics["chance_level"]
    assert balanced.metrics["accuracy_sex"] == 0.5
    # the refitted null shares the scheme's bias, so it cannot reveal it; the below-chance test can
    assert (loco.null == 0.0).all() and loco.metrics["permutation_p_value"] == 1.0
    assert loco.metrics["below_chance_p"] <= 0.05 and "biased" in loco.warning
    assert balanced.metrics["below_chance_p"] == 1.0 and balanced.warning is None


def test_a_model_that_follows_its_training_balance_anti_learns_sex_alone_under_loco_too():
    stacks = tiny_stacks(n_cages=8, column="sex")
    loco = evaluate("prior", prior_follower, stacks, "loco", FAST, n_permutations=9, workers=1)
    balanced = evaluate("prior", prior_follower, stacks, "balanced", FAST, n_permutations=9, workers=1)
    assert loco.metrics["accuracy"] == 0.0 and balanced.metrics["accuracy"] == 0.5 == balanced.metrics["chance_level"]
    assert (loco.null == 0.0).all() and loco.metrics["below_chance_p"] <= 0.05 and "biased" in loco.warning
    assert balanced.metrics["below_chance_p"] == 1.0 and balanced.warning is None
    # a model that ranks nothing: ROC AUC 0.5 in every fold holding both sexes; loco's folds hold one sex each
    assert balanced.metrics["roc_auc"] == 0.5 and balanced.metrics["roc_auc_folds"] == len(balanced.result.folds)
    assert math.isnan(loco.metrics["roc_auc"]) and loco.metrics["roc_auc_folds"] == 0


def test_the_balanced_null_redraws_its_folds_for_each_permutation_and_so_centres_on_chance():
    """Kept fixed, the real pairs would often hold out two cages of one permuted sex: a null below chance."""
    stacks = tiny_stacks(n_cages=8)
    folded = FoldedModel(prior_follower(), stacks.X, 4)

    def redraw(y: np.ndarray) -> list[Fold]:
        return make_folds("balanced", stacks.cage, FAST, PAPER, y)

    redrawn = permutation_null(folded, PAPER, stacks.y, stacks.cage, redraw, 30, seed=0, workers=1)
    real_pairs = make_folds("balanced", stacks.cage, FAST, PAPER, stacks.y)
    fixed = permutation_null(folded, PAPER, stacks.y, stacks.cage, lambda y: real_pairs, 30, seed=0, workers=1)
    assert (redrawn == 0.25).all()
    assert fixed.mean() < 0.2


@pytest.mark.slow
def test_below_chance_p_is_small_for_anti_learnt_and_uniform_for_label_free_predictions():
    stacks = tiny_stacks(n_cages=12)
    y, cages = stacks.y, stacks.cage
    wrong_sex = np.where(female(PAPER, y), 0, 2)  # every mouse called an adult of the other sex
    assert below_chance_p_value(PAPER, y, wrong_sex, cages, 500, seed=0) < 0.01
    rng = np.random.default_rng(0)
    p = np.array([below_chance_p_value(PAPER, y, rng.integers(0, 4, len(y)), cages, 200, seed=s) for s in range(60)])
    assert 0.35 < p.mean() < 0.65 and np.mean(p <= 0.05) <= 0.12  # about uniform under the null
    assert below_chance_p_value(PAPER, y, y, cages, 100, seed=0) == 1.0
    sex = tiny_stacks(n_cages=12, column="sex")  # the same for sex alone: whole cages called the other sex
    assert below_chance_p_value(SEX, sex.y, 1 - sex.y, cages, 500, seed=0) < 0.01
    assert below_chance_p_value(SEX, sex.y, sex.y, cages, 100, seed=0) == 1.0


def test_above_chance_rests_on_the_permutation_p_value_or_else_the_cage_interval():
    m = {"chance_level": 0.25, "accuracy_ci_low": 0.3, "accuracy_ci_high": 0.6, "permutation_p_value": 0.01}
    assert above_chance(m, 0.95) == (True, "permutation p = 0.01 <= 0.05")
    assert above_chance({**m, "permutation_p_value": 0.2}, 0.95)[0] is False
    tuned = {**m, "permutation_p_value": float("nan")}
    assert above_chance(tuned, 0.95) == (True, "cage-bootstrap interval [0.300, 0.600] lies above chance 0.25")
    assert above_chance({**tuned, "accuracy_ci_low": 0.25}, 0.95)[0] is False


def test_bias_warning_says_in_words_that_the_number_is_not_evidence():
    m = {"accuracy": 0.0, "chance_level": 0.25, "below_chance_p": 0.001}
    assert bias_warning(m, 0.95) == (
        "accuracy 0.000 is significantly below chance 0.25 (p = 0.001): the scheme is biased on this cohort, "
        "the number is not evidence about the mice"
    )
    assert bias_warning({**m, "below_chance_p": 0.2}, 0.95) is None


# --- metrics --------------------------------------------------------------------------


def test_classification_metrics_of_a_hand_made_example():
    # AM: 1 of 2 right, JM: 1 of 2, AF: 1 of 2, no JF at all
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 3, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, PAPER, groups_of(y_true))
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["accuracy_female"] == pytest.approx(1 / 2)
    assert m["accuracy_male"] == pytest.approx(2 / 4)
    assert m["accuracy_age_adult"] == pytest.approx(2 / 4)  # AM, AM->JM, AF, AF->AM
    assert m["accuracy_age_juvenile"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert (m["recall_AM"], m["recall_JM"], m["recall_AF"]) == pytest.approx((0.5, 0.5, 0.5))
    assert math.isnan(m["recall_JF"])
    assert m["accuracy_sex"] == pytest.approx(4 / 6)  # JM->JF and AF->AM got the sex wrong
    assert m["accuracy_age"] == pytest.approx(5 / 6)  # AM->JM got the age wrong
    assert set(m) == {
        "accuracy_sex",
        "accuracy_age",
        "accuracy",
        "balanced_accuracy",
        "accuracy_female",
        "accuracy_male",
        "accuracy_age_adult",
        "accuracy_age_juvenile",
        "f1_macro",
        *(f"recall_{c}" for c in PAPER_CLASSES),
    }


def test_a_two_class_target_reports_accuracy_within_the_other_grouping_columns_not_its_own():
    # sex: M M F F F F; 4 of 6 right
    y_true, y_pred = SEX.indices(list("MMFFFF")), SEX.indices(list("MFFFMF"))
    groups = {
        "sex": np.array(list("MMFFFF")),
        "age": np.array(["adult", "juvenile", "adult", "adult", "juvenile", "adult"]),
        "genotype": np.array(["WT", "KO", "WT", "KO", "", "KO"]),  # "": unknown, left out
        "treatment": np.array(["drug A", "drug A", "saline", "saline", "saline", "saline"]),
    }
    m = classification_metrics(y_true, y_pred, SEX, groups)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert (m["recall_M"], m["recall_F"]) == pytest.approx((1 / 2, 3 / 4))
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert (m["accuracy_age_adult"], m["accuracy_age_juvenile"]) == (1.0, 0.0)
    assert (m["accuracy_genotype_WT"], m["accuracy_genotype_KO"]) == pytest.approx((2 / 2, 2 / 3))
    assert (m["accuracy_treatment_drug_A"], m["accuracy_treatment_saline"]) == (0.5, 0.75)  # a level as a name
    assert set(m) == {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "recall_M",
        "recall_F",
        "accuracy_age_adult",
        "accuracy_age_juvenile",
        "accuracy_genotype_KO",
        "accuracy_genotype_WT",
        "accuracy_treatment_drug_A",
        "accuracy_treatment_saline",
    }  # no accuracy_female/male: sex is the target; no accuracy_sex/age: one factor only


def test_accuracy_female_and_male_stay_for_sex_when_another_column_is_the_target():
    genotype = Target.of("genotype", ["WT", "KO"])
    assert genotype.classes == ("KO", "WT")  # sorted as text by default
    y_true, y_pred = genotype.indices(["KO", "WT", "KO", "WT"]), genotype.indices(["KO", "KO", "KO", "WT"])
    m = classification_metrics(
        y_true, y_pred, genotype, {"sex": np.array(list("MMFF")), "genotype": genotype.names(y_true)}
    )
    assert (m["accuracy_male"], m["accuracy_female"]) == (0.5, 1.0)
    assert (m["recall_KO"], m["recall_WT"]) == (1.0, 0.5)
    assert not {"accuracy_genotype_KO", "accuracy_genotype_WT", "accuracy_sex"} & set(m)


def test_accuracy_within_a_level_absent_from_the_recordings_is_not_reported():
    y_true = np.array([0, 1])
    m = classification_metrics(y_true, np.array([0, 0]), PAPER, groups_of(y_true))  # males only: one fold's cage
    assert "accuracy_female" not in m and m["accuracy_male"] == 0.5
    assert "accuracy_female" not in classification_metrics(y_true, y_true, PAPER, {})  # no groups known


def test_confusion_rows_are_true_and_columns_predicted_in_class_order():
    y_true = np.array([PAPER_CLASSES.index("JM"), PAPER_CLASSES.index("AM")])
    y_pred = np.array([PAPER_CLASSES.index("JF"), PAPER_CLASSES.index("AM")])
    counts = confusion(y_true, y_pred, 4)
    assert counts.shape == (4, 4)
    assert counts[1, 3] == 1  # true JM predicted JF
    assert counts[0, 0] == 1
    assert counts.sum() == 2
    two = confusion(SEX.indices(["F", "F", "M"]), SEX.indices(["F", "M", "M"]), 2)
    assert two.tolist() == [[1, 0], [1, 1]]  # rows M, F: the order of target.classes


def test_the_papers_table_1_gives_its_reported_accuracies():
    y_true, y_pred = from_table(TABLE_1)
    np.testing.assert_array_equal(confusion(y_true, y_pred, 4), TABLE_1)
    m = classification_metrics(y_true, y_pred, PAPER, groups_of(y_true))
    assert round(m["accuracy"], 3) == 0.771
    assert round(m["accuracy_female"], 3) == 0.917
    assert round(m["accuracy_male"], 3) == 0.625
    assert m["accuracy_sex"] == pytest.approx(85 / 96)  # 7 males called female, 4 females called male
    assert m["recall_JM"] == pytest.approx(8 / 24)
    assert m["recall_JF"] == 1.0


def test_roc_auc_is_averaged_over_the_folds_not_pooled_across_them():
    """Each fold ranks its own test recordings perfectly, but the second fold's model scores everything
    higher: pooled, its negatives outrank the first fold's positives (Airola et al. 2011)."""
    y = np.array([0, 1, 0, 1, 0, 0])
    folds = [
        Fold("a", np.array([2, 3, 4, 5]), np.array([0, 1])),
        Fold("b", np.array([0, 1, 4, 5]), np.array([2, 3])),
        Fold("c", np.array([0, 1, 2, 3]), np.array([4, 5])),  # one class only: no AUC of its own
    ]
    scores = [np.array([0.1, 0.3]), np.array([0.6, 0.9]), np.array([0.2, 0.4])]
    result = out_of_fold(y, folds, [np.c_[1 - p, p] for p in scores])
    m = fold_roc_auc(result, FAST)
    assert m["roc_auc"] == 1.0 and m["roc_auc_folds"] == 2
    assert (m["roc_auc_ci_low"], m["roc_auc_ci_high"]) == (1.0, 1.0)
    assert roc_auc_score(y, result.proba[:, 1]) < 1.0  # what pooling would report
    flipped = out_of_fold(y, folds, [np.c_[p, 1 - p] for p in scores])
    assert fold_roc_auc(flipped, FAST)["roc_auc"] == 0.0


def test_binomial_interval_is_the_exact_clopper_pearson_interval():
    low, high = binomial_interval(74, 96, 0.95)
    assert low == pytest.approx(stats.beta.ppf(0.025, 74, 96 - 74 + 1), rel=1e-9)
    assert high == pytest.approx(stats.beta.ppf(0.975, 74 + 1, 96 - 74), rel=1e-9)
    ci = stats.binomtest(74, 96).proportion_ci(0.95, method="exact")
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert low < 74 / 96 < high


@pytest.mark.parametrize("n, chance, alpha", [(96, 0.25, 0.05), (48, 0.25, 0.05), (20, 0.5, 0.01), (96, 0.25, 0.5)])
def test_significance_threshold_is_the_smallest_accuracy_a_guesser_rarely_reaches(n, chance, alpha):
    k = next(k for k in range(n + 1) if stats.binom.sf(k - 1, n, chance) <= alpha)
    assert significance_threshold(n, chance, alpha) == k / n
    assert stats.binom.sf(k - 2, n, chance) > alpha  # one fewer hit is not enough


def test_significance_threshold_for_96_recordings_at_chance_one_quarter():
    assert significance_threshold(96, 0.25, 0.05) == 32 / 96


def test_chance_level_is_the_share_of_the_most_frequent_class():
    assert chance_level(np.repeat(np.arange(4), 12)) == 0.25
    assert chance_level(np.array([0, 0, 0, 1])) == 0.75


# --- bootstrap over cages -------------------------------------------------------------


def test_bootstrap_interval_contains_the_observed_accuracy(stacks):
    correct = np.random.default_rng(0).random(len(stacks.y)) < 0.7
    low, high = bootstrap_accuracy_interval(correct, stacks.cage, 500, 0.95, seed=0)
    assert 0 <= low <= correct.mean() <= high <= 1
    assert low < high


def test_bootstrap_interval_is_wider_when_correctness_clusters_by_cage(stacks):
    in_cage = np.tile(np.arange(PER_CAGE), N_CAGES)
    cage_number = np.repeat(np.arange(N_CAGES), PER_CAGE)
    clustered = cage_number % 2 == 0  # whole cages right or wrong
    spread = in_cage % 2 == 0  # half of every cage right
    assert clustered.mean() == spread.mean() == 0.5
    c_low, c_high = bootstrap_accuracy_interval(clustered, stacks.cage, 500, 0.95, seed=0)
    s_low, s_high = bootstrap_accuracy_interval(spread, stacks.cage, 500, 0.95, seed=0)
    assert c_high - c_low > s_high - s_low
    assert (s_low, s_high) == pytest.approx((0.5, 0.5))


def test_bootstrap_interval_of_a_perfect_classifier_is_one_one(stacks):
    assert bootstrap_accuracy_interval(np.ones(48, bool), stacks.cage, 100, 0.95, seed=0) == (1.0, 1.0)


def test_bootstrap_interval_is_reproducible_for_a_seed(stacks):
    correct = np.random.default_rng(0).random(len(stacks.y)) < 0.6
    a = bootstrap_accuracy_interval(correct, stacks.cage, 300, 0.9, seed=4)
    assert a == bootstrap_accuracy_interval(correct, stacks.cage, 300, 0.9, seed=4)


# --- permutation test -----------------------------------------------------------------


def the_papers_permutation(y: np.ndarray, cages: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The design permutation as it was written for the paper's four classes only (sex across single-sex
    cages, age within every cage, sex within a mixed cage): the reference the general one must match."""
    is_female, is_juvenile = female(PAPER, y).copy(), juvenile(PAPER, y).copy()
    members = [np.flatnonzero(cages == c) for c in np.unique(cages)]
    single_sex = [idx for idx in members if is_female[idx].all() or not is_female[idx].any()]
    if single_sex:
        cage_sex = np.array([is_female[idx[0]] for idx in single_sex])[rng.permutation(len(single_sex))]
        for idx, sex in zip(single_sex, cage_sex):
            is_female[idx] = sex
    for idx in members:
        is_juvenile[idx] = is_juvenile[idx][rng.permutation(len(idx))]
        if not (is_female[idx].all() or not is_female[idx].any()):
            is_female[idx] = is_female[idx][rng.permutation(len(idx))]
    return 2 * is_female.astype(np.int64) + is_juvenile.astype(np.int64)


def test_the_papers_design_permutation_draws_exactly_what_it_drew_before_the_target_was_general(stacks):
    y, cages = design(3, 3, n_mixed=2)
    for labels, groups in ((stacks.y, stacks.cage), (y, cages)):
        new, old = np.random.default_rng(7), np.random.default_rng(7)
        for _ in range(20):
            np.testing.assert_array_equal(
                design_permutation(PAPER, labels, groups, new), the_papers_permutation(labels, groups, old)
            )


def test_design_permutation_keeps_cages_single_sex_with_their_juvenile_counts(stacks):
    rng = np.random.default_rng(0)
    y, cages = stacks.y, stacks.cage
    sexes = sorted(female(PAPER, y[cages == c])[0] for c in np.unique(cages))
    for _ in range(50):
        permuted = design_permutation(PAPER, y, cages, rng)
        assert permuted.dtype == np.int64 and set(permuted) <= {0, 1, 2, 3}
        for c in np.unique(cages):
            mine = cages == c
            assert len(set(female(PAPER, permuted[mine]))) == 1
            assert juvenile(PAPER, permuted[mine]).sum() == juvenile(PAPER, y[mine]).sum()
        assert sorted(female(PAPER, permuted[cages == c])[0] for c in np.unique(cages)) == sexes


def test_design_permutation_swaps_sex_between_cages_and_shuffles_age_within_them(stacks):
    rng = np.random.default_rng(0)
    y, cages = stacks.y, stacks.cage
    draws = [design_permutation(PAPER, y, cages, rng) for _ in range(50)]
    assert any((female(PAPER, p) != female(PAPER, y)).any() for p in draws)  # some cage changed sex
    assert any((juvenile(PAPER, p) != juvenile(PAPER, y)).any() for p in draws)  # ages moved between cage-mates


def test_for_sex_alone_design_permutation_moves_whole_cages_and_nothing_within_them():
    sex = tiny_stacks(column="sex")
    y, cages = sex.y, sex.cage
    rng = np.random.default_rng(0)
    draws = [design_permutation(SEX, y, cages, rng) for _ in range(50)]
    for permuted in draws:
        assert all(len(set(permuted[cages == c])) == 1 for c in np.unique(cages))  # every cage single-sex
        assert sorted(permuted[cages == c][0] for c in np.unique(cages)) == [0, 0, 0, 1, 1, 1]
    assert any((p != y).any() for p in draws)


def test_for_a_target_within_every_cage_design_permutation_shuffles_only_within_cages():
    age = tiny_stacks(column="age")
    y, cages = age.y, age.cage
    rng = np.random.default_rng(0)
    draws = [design_permutation(AGE, y, cages, rng) for _ in range(50)]
    for permuted in draws:
        for c in np.unique(cages):
            assert sorted(permuted[cages == c]) == sorted(y[cages == c])  # each cage keeps its labels
    assert any((p != y).any() for p in draws)


@BOTH
def test_within_cage_shuffles_keep_every_cage_sex_but_design_permutation_does_not(target):
    stacks = tiny_stacks(column=target.column)
    rng = np.random.default_rng(0)
    y, cages = stacks.y, stacks.cage
    original = sex_of_cages(target, y, cages)
    within_changed, design_changed = False, False
    for _ in range(50):
        within = y.copy()
        for c in np.unique(cages):
            idx = np.flatnonzero(cages == c)
            within[idx] = y[rng.permutation(idx)]
        within_changed |= sex_of_cages(target, within, cages) != original
        design_changed |= sex_of_cages(target, design_permutation(target, y, cages, rng), cages) != original
    assert not within_changed  # a cage-level classifier would score the same on every such shuffle
    assert design_changed


def test_design_permutation_shuffles_sex_within_a_mixed_sex_cage():
    y = np.array([0, 2, 1, 3])  # one cage, two males and two females
    cages = np.array(["a"] * 4)
    rng = np.random.default_rng(0)
    draws = [design_permutation(PAPER, y, cages, rng) for _ in range(30)]
    assert all(female(PAPER, p).sum() == 2 and juvenile(PAPER, p).sum() == 2 for p in draws)
    assert any(not np.array_equal(female(PAPER, p), female(PAPER, y)) for p in draws)


def test_permutation_p_value_counts_the_observed_score_as_one_of_the_null():
    null = np.array([0.2, 0.5, 0.7, 0.1, 0.45])
    assert permutation_p_value(0.5, null) == (1 + 2) / (1 + 5)
    assert permutation_p_value(0.9, null) == 1 / 6
    assert permutation_p_value(0.0, null) == 1.0
    assert math.isnan(permutation_p_value(0.5, np.array([])))


# --- evaluate and reports -------------------------------------------------------------

UNCERTAINTY_KEYS = {
    "accuracy_ci_low",
    "accuracy_ci_high",
    "accuracy_binomial_low",
    "accuracy_binomial_high",
    "chance_level",
    "significance_threshold",
    "permutation_p_value",
    "n_permutations",
    "below_chance_p",
    "n_recordings",
    "n_cages",
}
METRIC_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "accuracy_female",
    "accuracy_male",
    "accuracy_age_adult",
    "accuracy_age_juvenile",
    "accuracy_sex",
    "accuracy_age",
    "f1_macro",
    *(f"recall_{c}" for c in PAPER_CLASSES),
    *UNCERTAINTY_KEYS,
}
SEX_METRIC_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "accuracy_age_adult",
    "accuracy_age_juvenile",
    "f1_macro",
    "recall_M",
    "recall_F",
    *UNCERTAINTY_KEYS,
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "roc_auc_folds",
}
"""Sex alone: no accuracy within its own levels, no accuracy per factor, a per-fold ROC AUC for two classes."""
PREDICTION_COLUMNS = ["recording", "animal_id", "cage", "fold", "true", "predicted", *(f"p_{c}" for c in PAPER_CLASSES)]


@pytest.fixture(scope="module")
def loco(stacks):
    return evaluate("knn", knn, stacks, "loco", FAST, n_permutations=19, workers=1)


@pytest.fixture(scope="module")
def balanced(stacks):
    params = FAST.model_copy(update={"matchings": 2})
    return evaluate("knn", knn, stacks, "balanced", params, n_permutations=19, workers=1)


@pytest.fixture(scope="module")
def kfold(stacks):
    return evaluate("knn", knn, stacks, "kfold", FAST, n_permutations=19, workers=1)


@pytest.fixture(scope="module")
def sex_balanced():
    params = FAST.model_copy(update={"matchings": 2})
    return evaluate("knn", knn, tiny_stacks(column="sex"), "balanced", params, n_permutations=19, workers=1)


@pytest.mark.slow
def test_the_permutation_null_is_the_same_whatever_the_number_of_worker_processes(stacks, balanced, monkeypatch):
    from lmt_stereotype import evaluation

    monkeypatch.setattr(evaluation, "WORKERS_WORTH_S", 0.0)  # workers even for a null that takes a second
    again = evaluate("knn", knn, stacks, "balanced", FAST.model_copy(update={"matchings": 2}), 19, workers=2)
    np.testing.assert_array_equal(again.null, balanced.null)


def test_evaluate_reports_every_metric_with_its_uncertainty(loco, stacks):
    m = loco.metrics
    assert set(m) == METRIC_KEYS
    assert 1 / 20 <= m["permutation_p_value"] <= 1
    assert m["n_permutations"] == 19 and len(loco.null) == 19
    assert m["n_recordings"] == 48 and m["n_cages"] == N_CAGES
    assert m["chance_level"] == 0.25
    assert m["significance_threshold"] == significance_threshold(48, 0.25, 0.05)
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
    assert m["accuracy_binomial_low"] <= m["accuracy"] <= m["accuracy_binomial_high"]
    assert m["accuracy"] == pytest.approx(np.trace(loco.confusion) / 48)
    assert loco.confusion.sum() == 48
    assert set(loco.fold_metrics) == {f"c{c}" for c in range(N_CAGES)}


def test_the_balanced_scheme_reports_the_same_metrics_over_its_pairs_of_cages(balanced, stacks):
    m = balanced.metrics
    assert set(m) == METRIC_KEYS and m["n_permutations"] == 19 and m["n_recordings"] == 48
    assert m["permutation_p_value"] == permutation_p_value(m["accuracy"], balanced.null)
    assert len(balanced.fold_metrics) == 6 and all(name.startswith(("m0-", "m1-")) for name in balanced.fold_metrics)
    assert all(len(f.split(";")) == 2 for f in balanced.predictions["fold"])  # tested once per matching
    assert balanced.warning is None
    assert balanced.target == PAPER
    for fold in balanced.fold_metrics.values():  # a male and a female cage in every fold
        assert {"accuracy_female", "accuracy_male", "accuracy_sex"} <= set(fold)


def test_a_two_class_target_is_evaluated_with_its_own_metrics_confusion_and_probabilities(sex_balanced, tmp_path):
    sex = sex_balanced
    m = sex.metrics
    assert sex.target == SEX and set(m) == SEX_METRIC_KEYS
    assert m["chance_level"] == 0.5 and m["n_permutations"] == 19 and m["n_recordings"] == 48
    assert m["permutation_p_value"] == permutation_p_value(m["accuracy"], sex.null)
    assert m["roc_auc_folds"] == 6 and m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"]
    assert sex.confusion.shape == (2, 2) and sex.confusion.sum() == 48
    assert m["accuracy"] == pytest.approx(np.trace(sex.confusion) / 48)
    table = sex.predictions
    assert list(table.columns) == [*PREDICTION_COLUMNS[:6], "p_M", "p_F"]
    assert set(table["true"]) == {"M", "F"} and set(table["predicted"]) <= {"M", "F"}
    np.testing.assert_allclose(table[["p_M", "p_F"]].sum(axis=1), 1.0, atol=1e-5)
    write_reports(sex, tmp_path)
    matrix = json.loads((tmp_path / "confusion.json").read_text())
    assert (matrix["target"], matrix["classes"]) == ("sex", ["M", "F"])
    assert matrix["counts"] == sex.confusion.tolist()


def test_evaluate_p_value_is_computed_from_its_null(loco):
    assert loco.metrics["permutation_p_value"] == permutation_p_value(loco.metrics["accuracy"], loco.null)


def test_the_leaky_kfold_scheme_has_no_permutation_p_value(kfold):
    assert set(kfold.metrics) == METRIC_KEYS
    assert math.isnan(kfold.metrics["permutation_p_value"])
    assert kfold.metrics["n_permutations"] == 0 and len(kfold.null) == 0
    assert set(kfold.fold_metrics) == {f"fold{i:02d}" for i in range(4)}


def test_predictions_have_one_row_per_recording_and_loco_folds_are_cages(loco, stacks):
    table = loco.predictions
    assert list(table.columns) == PREDICTION_COLUMNS
    assert len(table) == len(stacks.y)
    assert (table["fold"] == table["cage"]).all()
    assert table["true"].tolist() == stacks.label.tolist()
    assert set(table["predicted"]) <= set(PAPER_CLASSES)
    np.testing.assert_allclose(table[[f"p_{c}" for c in PAPER_CLASSES]].sum(axis=1), 1.0, atol=1e-5)
    assert table["animal_id"].tolist() == stacks.animal_id.tolist()


def test_write_reports_writes_strict_json_a_png_and_tables(kfold, tmp_path):
    folder = tmp_path / "x"
    written = write_reports(kfold, folder)
    for name in ("metrics.json", "confusion.json", "confusion.png", "predictions.csv", "folds.csv"):
        assert folder / name in written
        assert (folder / name).is_file()

    def no_nan(constant: str):
        raise AssertionError(f"non-standard JSON constant {constant}")

    metrics = json.loads((folder / "metrics.json").read_text(), parse_constant=no_nan)
    assert set(metrics) == METRIC_KEYS
    assert metrics["permutation_p_value"] is None  # NaN written as null
    assert metrics["accuracy"] == pytest.approx(kfold.metrics["accuracy"])
    matrix = json.loads((folder / "confusion.json").read_text(), parse_constant=no_nan)
    assert matrix["target"] == "class" and matrix["classes"] == list(PAPER_CLASSES)
    assert matrix["rows"] == "true" and matrix["columns"] == "predicted"
    assert matrix["counts"] == kfold.confusion.tolist()
    assert (folder / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = pd.read_csv(folder / "predictions.csv")
    assert list(predictions.columns) == PREDICTION_COLUMNS and len(predictions) == 48
    folds = pd.read_csv(folder / "folds.csv")
    assert folds["fold"].tolist() == sorted(kfold.fold_metrics) and "accuracy" in folds.columns
    assert not (folder / "permutation_null.csv").exists()


def test_write_reports_under_loco_also_writes_the_permutation_null(loco, tmp_path):
    written = write_reports(loco, tmp_path / "loco")
    null = pd.read_csv(tmp_path / "loco" / "permutation_null.csv")
    assert tmp_path / "loco" / "permutation_null.csv" in written
    np.testing.assert_allclose(null["accuracy"], loco.null)
