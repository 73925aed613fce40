"""Learned age borders: where to cut a model's continuous age estimate into <30 / 30-59 / 60+.

The teams moved the old-age cut to 58 by hand because models see 58-year-olds as 60+ more often
than the reverse, and macro F1 rewards the rare 60+ classes. For a model that estimates the age
in years (an ordinal, regression or distribution head), the two cuts can be learned: on the
out-of-fold rows, the pair of borders (a half-year grid, :mod:`maskcls.ages`) that maximises the 18-class macro F1,
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

from maskcls.ages import best_borders, laplace_group_probabilities
from maskcls.labels import NUM_CLASSES, class_from_mask_gender, mask_gender_probabilities
from maskcls.metrics import macro_f1

MIN_AGE_SCALE = 0.1
"""The smallest Laplace scale (years) kept for the age estimate's error, should it be exact."""


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
    return class_from_mask_gender(mask_gender, laplace_group_probabilities(estimates, borders, scale).argmax(axis=1))


def fit_age_borders(
    probabilities: np.ndarray, estimates: np.ndarray, target: np.ndarray, scale: float
) -> tuple[float, float]:
    """The pair of borders with the highest macro F1 (:func:`maskcls.ages.best_borders`)."""
    mask_gender = mask_gender_probabilities(probabilities).argmax(axis=1)
    return best_borders(lambda borders: macro_f1(target, classes_with_borders(mask_gender, estimates, borders, scale)))


def age_scale(estimates: np.ndarray, ages: np.ndarray) -> float:
    """The Laplace scale of the estimate's error: its mean absolute error (with a floor)."""
    return max(round(float(np.abs(estimates - ages).mean()), 4), MIN_AGE_SCALE)


def f1_at_fitted_borders(
    probabilities: np.ndarray, estimates: np.ndarray, ages: np.ndarray, target: np.ndarray
) -> float:
    """The macro F1 of these rows decided with the borders (and scale) that fit them best: what the
    model scores once ``calibrate`` has learned its borders, were these its out-of-fold rows (in
    sample, so a little above what held-out rows would give). The model's own cut at 30 / 60 says
    little of an age estimate that is cut elsewhere afterwards; training picks its best epoch by this."""
    borders, scale = fit_borders_and_scale(probabilities, estimates, ages, target)
    mask_gender = mask_gender_probabilities(probabilities).argmax(axis=1)
    return macro_f1(target, classes_with_borders(mask_gender, estimates, borders, scale))


def fit_borders_and_scale(
    probabilities: np.ndarray, estimates: np.ndarray, ages: np.ndarray, target: np.ndarray
) -> tuple[tuple[float, float], float]:
    """The borders that fit these rows best, with the Laplace scale of their estimates' error."""
    scale = age_scale(estimates, ages)
    return fit_age_borders(probabilities, estimates, target, scale), scale


def held_out_borders(
    probabilities: np.ndarray, estimates: np.ndarray, ages: np.ndarray, target: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, list[list[float]], list[float]]:
    """Each fold's rows decided at the borders (and scale) fitted on the other folds: the classes,
    and each fold's borders and scale."""
    mask_gender = mask_gender_probabilities(probabilities).argmax(axis=1)
    classes = np.empty(len(target), dtype=np.int64)
    fold_borders, fold_scales = [], []
    for fold in np.unique(folds):
        inside = folds != fold
        borders, scale = fit_borders_and_scale(probabilities[inside], estimates[inside], ages[inside], target[inside])
        classes[~inside] = classes_with_borders(mask_gender[~inside], estimates[~inside], borders, scale)
        fold_borders.append(list(borders))
        fold_scales.append(scale)
    return classes, fold_borders, fold_scales
