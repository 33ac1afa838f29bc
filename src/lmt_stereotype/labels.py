"""What the models predict: the target column, its classes in order, and the factors a label is made of.

The target is a column of the sample table (the manifest, its empty cells filled from
ANIMAL): ``sex``, ``age``, ``genotype``, ``treatment``, any column a lab adds, or
``class``, the paper's four classes made of sex and age. Its classes' order is the order
of every confusion matrix, every model's outputs (``p_AM`` ... or ``p_WT``, ``p_KO``) and
the class indices ``y``. A label is made of **factors**, the columns the design decides
about one by one (:mod:`~lmt_stereotype.design`): ``class`` of sex and age, any other
target of itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

PAPER_CLASSES: tuple[str, ...] = ("AM", "JM", "AF", "JF")
"""The paper's four classes in the order of its Table 1."""

DEFAULT_ORDER: dict[str, tuple[str, ...]] = {"class": PAPER_CLASSES, "sex": ("M", "F"), "age": ("adult", "juvenile")}
"""Class order when ``target.classes`` is null; any other column's levels are sorted as text."""

GROUPING_COLUMNS: tuple[str, ...] = ("sex", "age", "genotype", "strain", "treatment")
"""Columns the manifest may leave empty for ANIMAL to fill, and within whose levels accuracy is reported."""


def class_label(sex: str, age: str) -> str:
    """AM, JM, AF or JF, from sex M/F and age juvenile/adult."""
    return ("A" if age == "adult" else "J") + sex


def label_factors(column: str) -> tuple[str, ...]:
    """The sample-table columns a label of target ``column`` is made of: sex and age for ``class``."""
    return ("sex", "age") if column == "class" else (column,)


def sample_labels(samples: pd.DataFrame, column: str) -> np.ndarray:
    """Each sample's label for target ``column`` (``""`` where unknown); KeyError for a column the samples lack."""
    if column == "class":
        sex, age = samples["sex"].to_numpy(dtype=str), samples["age"].to_numpy(dtype=str)
        return np.array([class_label(s, a) if s and a else "" for s, a in zip(sex, age)], dtype=str)
    return samples[column].to_numpy(dtype=str)


@dataclass(frozen=True)
class Target:
    """The target column and its classes, in output order."""

    column: str
    classes: tuple[str, ...]

    @classmethod
    def of(cls, column: str, labels: Iterable[str], classes: Iterable[str] | None = None) -> Target:
        """The target for ``labels`` (non-empty), its order ``classes`` or the default one.

        Raises ValueError for a label that is not among ``classes``.
        """
        present = sorted({str(label) for label in labels})
        order = tuple(classes) if classes is not None else DEFAULT_ORDER.get(column, tuple(present))
        unknown = [label for label in present if label not in order]
        if unknown:
            raise ValueError(f"{column} {', '.join(map(repr, unknown))} not among target.classes {list(order)}")
        return cls(column, order)

    @property
    def is_paper(self) -> bool:
        """The paper's question: its four classes of sex and age."""
        return self.column == "class"

    @property
    def factors(self) -> tuple[str, ...]:
        """The columns a label is made of."""
        return label_factors(self.column)

    def indices(self, labels: Iterable[str]) -> np.ndarray:
        """Class indices ``y`` of labels such as ``"AF"`` or ``"KO"``."""
        return np.array([self.classes.index(label) for label in labels], dtype=np.int64)

    def names(self, y: np.ndarray) -> np.ndarray:
        """Labels of class indices."""
        return np.asarray(self.classes, dtype=object)[np.asarray(y)]

    def factor_levels(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Each factor's level per recording, for labels ``y``."""
        names = self.names(y)
        if self.is_paper:
            return {
                "sex": np.array([c[-1] for c in names], dtype=object),
                "age": np.array(["juvenile" if c.startswith("J") else "adult" for c in names], dtype=object),
            }
        return {self.column: names}

    def compose(self, levels: dict[str, np.ndarray]) -> np.ndarray:
        """Class indices from each factor's levels: the inverse of :meth:`factor_levels`."""
        if self.is_paper:
            return self.indices(class_label(s, a) for s, a in zip(levels["sex"], levels["age"]))
        return self.indices(levels[self.column])

    def level_order(self, factor: str) -> list[str]:
        """A factor's levels in the order the classes first name them."""
        levels = self.factor_levels(np.arange(len(self.classes)))[factor]
        return list(dict.fromkeys(levels))
