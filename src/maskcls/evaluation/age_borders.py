"""Learned age borders: where to cut a model's continuous age estimate into <30 / 30-59 / 60+.

The teams moved the old-age cut to 58 by hand because models see 58-year-olds as 60+ more often
than the reverse, and macro F1 rewards the rare 60+ classes. For a model that estimates the age
in years (an ordinal, regression or distribution head), the two cuts can be learned: on the
out-of-fold rows, the pair of borders (a half-year grid) that maximises the 18-class macro F1,
with mask and gender from the model's probabilities and the age group from the estimate.

Applied, the age part of the 18-class probabilities is rebuilt from the estimate: P(group) under
Laplace noise around it whose scale is the out-of-fold mean absolute error (the maximum-likelihood
scale of a Laplace distribution). Since the joint is (mask, gender) x age group, its argmax is the
best (mask, gender) with the group holding the most of that noise; the search scores exactly
those decisions (not merely the group the estimate falls in, which differs where the middle band
is narrower than the noise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskcls.labels import NUM_CLASSES
from maskcls.metrics import macro_f1

YOUNG_BORDERS = np.round(np.arange(20.0, 40.001, 0.5), 1)
OLD_BORDERS = np.round(np.arange(45.0, 70.001, 0.5), 1)


def mask_gender_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N, 18) -> (N, 6): P(mask, gender), index mask * 2 + gender."""
    return np.asarray(probabilities, dtype=np.float64).reshape(-1, 6, 3).sum(axis=2)


def laplace_group_probabilities(estimates: np.ndarray, borders: Sequence[float], scale: float) -> np.ndarray:
    """P(estimate + noise < border 1), P(between), P(>= border 2) for Laplace noise of ``scale`` years."""
    estimates = np.asarray(estimates, dtype=np.float64)[:, None]
    cuts = np.asarray(borders, dtype=np.float64)[None, :]
    z = (cuts - estimates) / scale
    below = np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))  # (N, 2)
    return np.column_stack([below[:, 0], below[:, 1] - below[:, 0], 1 - below[:, 1]])


def with_age_borders(probabilities: np.ndarray, estimates: np.ndarray, borders: Sequence[float], scale: float):
    """18-class probabilities whose age part comes from the estimate cut at ``borders``."""
    joint = (
        mask_gender_probabilities(probabilities)[:, :, None]
        * laplace_group_probabilities(estimates, borders, scale)[:, None, :]
    )
    return joint.reshape(-1, NUM_CLASSES)


def classes_with_borders(
    mask_gender: np.ndarray, estimates: np.ndarray, borders: Sequence[float], scale: float
) -> np.ndarray:
    """The decisions of :func:`with_age_borders`: the argmax (mask, gender) and the most likely group."""
    return mask_gender * 3 + laplace_group_probabilities(estimates, borders, scale).argmax(axis=1)


def fit_age_borders(
    probabilities: np.ndarray, estimates: np.ndarray, target: np.ndarray, scale: float
) -> tuple[float, float]:
    """The grid pair of borders with the highest macro F1 (the first such pair in grid order)."""
    mask_gender = mask_gender_probabilities(probabilities).argmax(axis=1)
    best, chosen = -1.0, (30.0, 60.0)
    for young in YOUNG_BORDERS:
        for old in OLD_BORDERS:
            score = macro_f1(target, classes_with_borders(mask_gender, estimates, (young, old), scale))
            if score > best + 1e-12:
                best, chosen = score, (float(young), float(old))
    return chosen
