"""The cohort's design: which factors of the target belong to the cage, and what that allows.

Mice of a cage share strong traits, so what is exchangeable under "the stops say
nothing about the target" depends on how the target's factors (:mod:`~lmt_stereotype.labels`)
are laid out over the cages, never on their names. A factor is a **cage factor** when it
is constant within at least half of the cages (sex in the paper's single-sex cages, a
genotype housed one per cage), a **within-cage factor** otherwise (age, recorded within
each cage; littermates of mixed genotype). From that:

- **Folds** (``evaluation.balanced_cage_folds``). A cage's **stratum** is the levels of its
  cage factors (male or female in the paper). Each fold holds out one cage of every
  stratum, so every training set keeps the cohort's balance of cage-level classes;
  cages in which a cage factor varies (mixed cages) are dealt over the folds beside
  them. A target without a cage factor gets one fold per cage (leave-one-cage-out),
  and every training set still holds every class, since every cage holds several.
- **Permutations** (:func:`design_permutation`). A cage factor moves between whole cages:
  its levels are permuted among the cages where it is constant, and shuffled among
  the recordings of a cage where it varies. A within-cage factor is shuffled among
  the recordings of every cage. The permuted factors make the permuted label. For the
  paper's four classes this is sex across cages and age within a cage; shuffling
  whole labels within cages instead would keep every cage's sex, and a cage-level
  classifier's null would equal its score (p = 1 always).
"""

from __future__ import annotations

import numpy as np

from lmt_stereotype.labels import Target

MIXED = "mixed"
"""The stratum of a cage in which a cage factor varies."""


def _cage_members(cages: np.ndarray) -> list[np.ndarray]:
    """Indices of each cage's recordings, cages in sorted order."""
    cages = np.asarray(cages)
    return [np.flatnonzero(cages == c) for c in np.unique(cages)]


def _constant(values: np.ndarray) -> bool:
    return bool((values == values[0]).all())


def cage_factors(target: Target, y: np.ndarray, cages: np.ndarray) -> list[str]:
    """The target's factors that are constant within at least half of the cages."""
    levels, members = target.factor_levels(y), _cage_members(cages)
    return [f for f in target.factors if 2 * sum(_constant(levels[f][idx]) for idx in members) >= len(members)]


def cage_strata(target: Target, y: np.ndarray, cages: np.ndarray) -> tuple[dict[str, list[str]], list[str]]:
    """Cages by stratum, the levels of their cage factors (``"M"``, ``"KO"``, ``"F+KO"`` ...; strata in
    the order the classes name their levels, cages sorted), and the mixed cages, in which one varies."""
    cages = np.asarray(cages)
    levels, factors = target.factor_levels(y), cage_factors(target, y, cages)
    orders = {f: target.level_order(f) for f in factors}
    strata: dict[tuple[str, ...], list[str]] = {}
    mixed = []
    for cage, idx in zip(np.unique(cages), _cage_members(cages)):
        if all(_constant(levels[f][idx]) for f in factors):
            strata.setdefault(tuple(str(levels[f][idx[0]]) for f in factors), []).append(str(cage))
        else:
            mixed.append(str(cage))
    rank = sorted(strata, key=lambda s: [orders[f].index(level) for f, level in zip(factors, s)])
    return {"+".join(s) or "all": strata[s] for s in rank}, mixed


def design_permutation(target: Target, y: np.ndarray, cages: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels ``y`` permuted where the design makes them exchangeable, and nowhere else (module docstring)."""
    y = np.asarray(y)
    levels = {f: v.copy() for f, v in target.factor_levels(y).items()}
    members = _cage_members(cages)
    between = cage_factors(target, y, cages)
    for f in between:
        pure = [idx for idx in members if _constant(levels[f][idx])]
        if pure:
            moved = np.array([levels[f][idx[0]] for idx in pure], dtype=object)[rng.permutation(len(pure))]
            for idx, level in zip(pure, moved):
                levels[f][idx] = level
    within = [f for f in target.factors if f not in between]
    for idx in members:
        for f in within + [f for f in between if not _constant(levels[f][idx])]:
            levels[f][idx] = levels[f][idx][rng.permutation(len(idx))]
    return target.compose(levels)


def permutation_words(target: Target, y: np.ndarray, cages: np.ndarray) -> str:
    """How the design permutes the labels (:func:`~lmt_stereotype.design.design_permutation`), in words:
    "sex across cages, age within a cage" for the paper's classes in single-sex cages."""
    cages = np.asarray(cages)
    levels, between = target.factor_levels(y), cage_factors(target, y, cages)
    words = []
    for factor in target.factors:
        if factor not in between:
            words.append(f"{factor} within a cage")
            continue
        mixed = any(len(set(levels[factor][cages == cage])) > 1 for cage in np.unique(cages))
        words.append(f"{factor} across cages" + (" (within a cage where it varies)" if mixed else ""))
    return ", ".join(words)
