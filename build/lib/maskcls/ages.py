"""What an age border means, once; the NumPy side (``training/age.py`` wraps it for torch).

A border ``b`` splits whole-year ages: an age below ``b`` is in the younger group, ``b`` and above
in the older one (``labels.age_groups``). A continuous age, such as a model's estimate or a
synthetic person's apparent age, stands for the whole year it rounds to, so it is below ``b``
when it is below ``b - 0.5`` (:func:`estimate_cuts`). Every cut of a continuous age goes through
here: the Laplace group probabilities of an age head, the learned borders of ``calibrate``, and
the oracle's borders on the apparent age; so do the searches for the best pair of borders, which
share one grid and one tie rule (:func:`best_borders`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ROUNDING = 0.5
"""A continuous age ``e`` stands for the whole year ``round(e)``: below border ``b`` iff ``e < b - 0.5``."""
YOUNG_BORDERS = np.round(np.arange(20.0, 40.001, 0.5), 1)
OLD_BORDERS = np.round(np.arange(45.0, 70.001, 0.5), 1)
"""The grid of border pairs every search tries (half years)."""


def estimate_cuts(borders: Sequence[float]) -> list[float]:
    """Where a continuous age is cut for whole-year ``borders``."""
    return [float(border) - ROUNDING for border in borders]


def groups_of_estimates(estimates: np.ndarray, borders: Sequence[float]) -> np.ndarray:
    """The age group (0, 1, 2) a continuous age falls in."""
    return np.digitize(np.asarray(estimates, dtype=np.float64), estimate_cuts(borders)).astype(np.int64)


def laplace_below(cut: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """P(centre + Laplace noise of ``scale`` < cut)."""
    z = (cut - centre) / scale
    return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))


def laplace_group_probabilities(estimates: np.ndarray, borders: Sequence[float], scale: float) -> np.ndarray:
    """P(younger group), P(middle), P(older) for whole-year ages under Laplace noise of ``scale``
    years around continuous ``estimates``: (N, 3)."""
    estimates = np.asarray(estimates, dtype=np.float64)[:, None]
    below = laplace_below(np.asarray(estimate_cuts(borders))[None, :], estimates, scale)  # (N, 2)
    return np.column_stack([below[:, 0], below[:, 1] - below[:, 0], 1 - below[:, 1]])


def best_borders(score: Callable[[tuple[float, float]], float]) -> tuple[float, float]:
    """The pair of the grid with the highest ``score``; ties go to the first in grid order (young
    border first, then old), since only a strict gain replaces the best so far."""
    best, chosen = -np.inf, (float(YOUNG_BORDERS[0]), float(OLD_BORDERS[0]))
    for young in YOUNG_BORDERS:
        for old in OLD_BORDERS:
            value = score((float(young), float(old)))
            if value > best + 1e-12:
                best, chosen = value, (float(young), float(old))
    return chosen
