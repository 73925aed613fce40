"""The competition's metric (macro F1 over the 18 classes), accuracy, and per-attribute F1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskcls.labels import HEAD_SIZES, NUM_CLASSES, decode_classes, person_classes


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int = NUM_CLASSES) -> np.ndarray:
    """``matrix[t, p]`` = how many images of class t were predicted p."""
    truth, predicted = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    return np.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def f1_per_class(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class; 0 where a class has neither truth nor prediction (as scikit-learn)."""
    true_positive = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)
    return np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int = NUM_CLASSES) -> float:
    """Mean F1 over all ``classes`` (absent classes count as 0, like
    ``f1_score(average="macro", labels=range(classes), zero_division=0)``)."""
    return float(f1_per_class(confusion(truth, predicted, classes)).mean())


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    return float((truth == predicted).mean()) if len(truth) else 0.0


def summary(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``f1``, ``accuracy`` and ``f1_mask`` / ``f1_gender`` / ``f1_age`` for 18-class labels."""
    result = {"f1": macro_f1(truth, predicted), "accuracy": accuracy(truth, predicted)}
    parts = zip(HEAD_SIZES.items(), decode_classes(truth), decode_classes(predicted), strict=True)
    for (name, size), part_truth, part_predicted in parts:
        result[f"f1_{name}"] = macro_f1(part_truth, part_predicted, size)
    return result


RESAMPLES = 1000  # resamples of the people behind an interval and a "beats first"
INTERVAL = (0.05, 0.95)  # the middle 90% of the resampled F1s


@dataclass(frozen=True)
class OverPeople:
    """How a macro F1 could move with other people drawn."""

    interval: tuple[float, float]  # the middle 90% of its resampled F1s (4 places)
    share_beating_first: float | None  # share of resamples beating the first prediction's; None for the first


def compare_over_people(truth: np.ndarray, predictions: list[np.ndarray], persons: np.ndarray) -> list[OverPeople]:
    """Each prediction's F1 over :data:`RESAMPLES` bootstrap resamples of the people (each with all
    their photos, within their gender x age group so that no class vanishes from a resample), the
    same resamples for all: its interval and, from the second on, its share beating the first (a
    tie is no win)."""
    scores = resampled_macro_f1(truth, predictions, persons, RESAMPLES, strata=person_classes(truth))
    return [
        OverPeople(
            tuple(np.quantile(resampled, INTERVAL).round(4).tolist()),
            float((resampled > scores[0]).mean()) if index else None,
        )
        for index, resampled in enumerate(scores)
    ]


def share_of_resamples_better(
    truth: np.ndarray, before: np.ndarray, after: np.ndarray, groups: np.ndarray, resamples: int = 400, seed: int = 0
) -> float:
    """Share of bootstrap resamples of ``groups`` (persons, drawn with replacement, their photos
    together) in which ``after`` scores a higher macro F1 than ``before``: how sure a gain is."""
    scores = resampled_macro_f1(truth, [before, after], groups, resamples, seed)
    return float((scores[1] > scores[0]).mean())


def resampled_macro_f1(
    truth: np.ndarray,
    predictions: list[np.ndarray],
    groups: np.ndarray,
    resamples: int = 400,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Macro F1 of each of ``predictions`` on the same bootstrap resamples of ``groups`` (persons
    drawn with replacement, each with all their photos): shape (len(predictions), resamples).
    With ``strata`` (one per photo, the same for all of a group's photos), each stratum keeps its
    number of groups in every resample, so no class can vanish from one and score 0."""
    distinct, first, group = np.unique(groups, return_index=True, return_inverse=True)
    cells = NUM_CLASSES * NUM_CLASSES

    def per_group(predicted: np.ndarray) -> np.ndarray:
        index = (group * NUM_CLASSES + np.asarray(truth, dtype=np.int64)) * NUM_CLASSES + predicted
        return np.bincount(index, minlength=len(distinct) * cells).reshape(len(distinct), cells)

    group_strata = np.zeros(len(distinct), int) if strata is None else np.asarray(strata)[first]
    draws = group_draws(group_strata, resamples, np.random.default_rng(seed))
    matrices = [draws @ per_group(np.asarray(predicted, dtype=np.int64)) for predicted in predictions]
    return np.stack([macro_f1_batch(cells.reshape(-1, NUM_CLASSES, NUM_CLASSES)) for cells in matrices])


def group_draws(group_strata: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each group is drawn in each resample (resamples, groups): as many draws with
    replacement within each stratum as it has groups."""
    draws = np.zeros((resamples, len(group_strata)), dtype=np.int64)
    for stratum in np.unique(group_strata):
        members = np.flatnonzero(group_strata == stratum)
        draws[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), resamples)
    return draws


def macro_f1_batch(matrices: np.ndarray) -> np.ndarray:
    """Macro F1 of each confusion matrix of a stack (B, C, C), as :func:`f1_per_class`."""
    true_positive = np.diagonal(matrices, axis1=1, axis2=2).astype(float)
    denominator = matrices.sum(axis=1) + matrices.sum(axis=2)
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return f1.mean(axis=1)
