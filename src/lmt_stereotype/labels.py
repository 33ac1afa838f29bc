"""The paper's four classes, in one place: their order, how sex and age make one, which are female or juvenile.

The order (AM, JM, AF, JF: the paper's Table 1) is the order of every confusion matrix,
every model's outputs (``p_AM`` ...) and the class indices ``y``.
"""

from __future__ import annotations

import numpy as np

CLASSES: tuple[str, ...] = ("AM", "JM", "AF", "JF")
"""Class order used everywhere (confusion matrices, model outputs): the paper's Table 1."""

FEMALE = np.array([c.endswith("F") for c in CLASSES])
"""Indexed by class index: a female class."""

JUVENILE = np.array([c.startswith("J") for c in CLASSES])
"""Indexed by class index: a juvenile class."""


def class_label(sex: str, age: str) -> str:
    """AM, JM, AF or JF, from sex M/F and age juvenile/adult."""
    return ("A" if age == "adult" else "J") + sex


def class_indices(labels) -> np.ndarray:
    """Class indices ``y`` of labels such as ``"AF"``."""
    return np.array([CLASSES.index(label) for label in labels], dtype=np.int64)
