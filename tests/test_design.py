"""Folds and permutations follow from the design, not from the label's name.

One cohort of 8 cages x 4 mice x 2 ages, single-sex cages, asked five questions: the paper's
four classes, sex, age, a genotype mixed within cages (2 WT + 2 KO per cage) and a genotype
housed one per cage. For each: no test cage is trained on, every training set holds every
class, and the permutation moves exactly the exchangeable units.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lmt_stereotype.design import MIXED, cage_factors, cage_strata, design_permutation
from lmt_stereotype.evaluation import balanced_cage_folds, leave_one_cage_out
from lmt_stereotype.labels import Target, class_label

N_CAGES, MICE = 8, 4


def cohort() -> dict[str, np.ndarray]:
    """Each recording's cage, mouse, sex, age and two genotypes (mixed within cages, one per cage)."""
    cage, mouse, age = np.meshgrid(np.arange(N_CAGES), np.arange(MICE), ["juvenile", "adult"], indexing="ij")
    cage, mouse, age = cage.ravel(), mouse.ravel(), age.ravel()
    sex = np.where(cage < N_CAGES // 2, "M", "F")
    return {
        "cage": np.array([f"c{c}" for c in cage]),
        "mouse": cage * MICE + mouse,
        "sex": sex,
        "age": age,
        "class": np.array([class_label(s, a) for s, a in zip(sex, age)]),
        "genotype_mixed": np.where(mouse < 2, "WT", "KO"),
        "genotype_per_cage": np.where(cage % 2 == 0, "WT", "KO"),  # both genotypes within each sex
    }


COHORT = cohort()
QUESTIONS = {  # target -> does it belong to the cage?
    "class": "sex across cages, age within",
    "sex": "cage",
    "age": "within",
    "genotype_mixed": "within",
    "genotype_per_cage": "cage",
}


def target_of(question: str) -> tuple[Target, np.ndarray]:
    labels = COHORT[question]
    column = "genotype" if question.startswith("genotype") else question
    target = Target.of(column, labels)
    return target, target.indices(labels)


def cage_multisets(labels: np.ndarray, cages: np.ndarray) -> dict[str, Counter]:
    return {c: Counter(labels[cages == c].tolist()) for c in np.unique(cages)}


@pytest.mark.parametrize("question", QUESTIONS)
@pytest.mark.parametrize("scheme", ["balanced", "loco"])
def test_folds_never_train_on_a_test_cage_and_always_train_on_every_class(question, scheme):
    target, y = target_of(question)
    cages = COHORT["cage"]
    folds = balanced_cage_folds(cages, target, y, matchings=2) if scheme == "balanced" else leave_one_cage_out(cages)
    assert set(np.concatenate([f.test for f in folds])) == set(range(len(y)))  # everyone is tested
    for fold in folds:
        assert not set(cages[fold.test]) & set(cages[fold.train])
        assert set(y[fold.train]) == set(range(len(target.classes)))


@pytest.mark.parametrize("question", QUESTIONS)
def test_balanced_folds_hold_out_one_cage_per_stratum_or_one_cage(question):
    target, y = target_of(question)
    cages = COHORT["cage"]
    strata, mixed = cage_strata(target, y, cages)
    folds = balanced_cage_folds(cages, target, y)
    if QUESTIONS[question] == "within":  # nothing belongs to the cage: leave one cage out
        assert cage_factors(target, y, cages) == [] and not mixed
        assert sorted(len(set(cages[f.test])) for f in folds) == [1] * N_CAGES
    else:
        assert len(strata) == 2 and not mixed
        for fold in folds:
            held = set(cages[fold.test])
            assert [len(held & set(members)) for members in strata.values()] == [1, 1]


def test_the_paper_classes_are_stratified_by_sex_in_class_order():
    target, y = target_of("class")
    strata, mixed = cage_strata(target, y, COHORT["cage"])
    assert cage_factors(target, y, COHORT["cage"]) == ["sex"]
    assert list(strata) == ["M", "F"] and not mixed


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_permutation_moves_exactly_the_exchangeable_units(question):
    target, y = target_of(question)
    cages = COHORT["cage"]
    rng = np.random.default_rng(0)
    draws = [design_permutation(target, y, cages, rng) for _ in range(40)]
    levels = target.factor_levels(y)
    for permuted in draws:
        moved = target.factor_levels(permuted)
        for factor in target.factors:
            before, after = cage_multisets(levels[factor], cages), cage_multisets(moved[factor], cages)
            if factor in cage_factors(target, y, cages):  # whole cages swap their level
                assert all(len(c) == 1 for c in after.values())
                assert Counter(next(iter(c)) for c in after.values()) == Counter(next(iter(c)) for c in before.values())
            else:  # shuffled within each cage: every cage keeps its own levels
                assert after == before
    assert any((p != y).any() for p in draws)
    if question == "class":  # some cage changed sex, and ages moved between cage-mates
        sexes = [target.factor_levels(p)["sex"] for p in draws]
        assert any((s != levels["sex"]).any() for s in sexes)
        assert any((target.factor_levels(p)["age"] != levels["age"]).any() for p in draws)


def test_a_mixed_design_pairs_single_genotype_cages_and_deals_the_mixed_ones():
    """Half the cages one genotype each, half mixed: WT-only and KO-only cages are held out in
    pairs with a mixed cage beside them; pure cages swap genotype, mixed cages shuffle within."""
    cages = COHORT["cage"]
    index = np.isin(cages, ["c0", "c1", "c2", "c3"])
    genotype = np.where(index, COHORT["genotype_per_cage"], COHORT["genotype_mixed"])
    target = Target.of("genotype", genotype)
    y = target.indices(genotype)
    strata, mixed = cage_strata(target, y, cages)
    assert strata == {"KO": ["c1", "c3"], "WT": ["c0", "c2"]} and mixed == ["c4", "c5", "c6", "c7"]
    for fold in balanced_cage_folds(cages, target, y):
        held = set(cages[fold.test])
        assert len(held & {"c0", "c2"}) == len(held & {"c1", "c3"}) == 1
        assert len(held & set(mixed)) == 2
    rng = np.random.default_rng(1)
    for _ in range(20):
        permuted = target.names(design_permutation(target, y, cages, rng))
        after = cage_multisets(permuted, cages)
        assert all(len(after[c]) == 1 for c in ("c0", "c1", "c2", "c3"))
        assert Counter(next(iter(after[c])) for c in ("c0", "c1", "c2", "c3")) == Counter({"WT": 2, "KO": 2})
        assert all(after[c] == Counter({"WT": 4, "KO": 4}) for c in mixed)


def test_a_cage_factor_needs_two_cages_per_stratum():
    cages = COHORT["cage"]
    keep = np.isin(cages, ["c0", "c1", "c2", "c4"])  # 3 male cages, 1 female
    target, y = target_of("sex")
    with pytest.raises(ValueError, match="at least 2 cages of each sex, the cohort has 3 M and 1 F cages"):
        balanced_cage_folds(cages[keep], target, y[keep])


def test_mixed_is_the_stratum_of_a_cage_holding_both_levels():
    assert MIXED == "mixed"
    cages = COHORT["cage"]
    sex = COHORT["sex"].copy()
    sex[cages == "c0"] = np.where(np.arange(8) % 2, "M", "F")
    target = Target.of("sex", sex)
    assert cage_strata(target, target.indices(sex), cages)[1] == ["c0"]
