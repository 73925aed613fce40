"""Soft and hard voting over probability files: folds of one experiment or several experiments.

- soft: the weighted mean of the 18-class probabilities; the class is its argmax.
- hard: each input votes for its argmax class with its weight; the class with the most votes
  wins. Ties go to the tied class with the highest summed (weighted) probability, then to the
  lowest class index.

Inputs are aligned on ``ImageID`` (test predictions) or ``path`` (validation and out-of-fold
files, which also carry ``target``, so the ensemble's CV score can be computed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.choices import VOTE_METHODS
from maskcls.errors import UserError
from maskcls.evaluation.calibrate import Calibration, calibrate_table, read_calibration
from maskcls.labels import AGE_ESTIMATE_COLUMN, NUM_CLASSES, PROBABILITY_COLUMNS
from maskcls.rundir import names
from maskcls.rundir.tables import read_probabilities

log = logging.getLogger("maskcls")
METHODS = VOTE_METHODS
KEYS = ("ImageID", "path")


@dataclass
class Ensemble:
    key: str  # ImageID or path
    table: pd.DataFrame  # key, (target), p0..p17 (hard: vote shares), in the first input's order
    classes: np.ndarray
    calibration: Calibration | None = None  # what decided the soft vote's classes, when one did


def input_file(source: str | Path, oof: bool = False) -> Path:
    """A file as given; a run folder or cv group means its test (or, with ``oof``, its
    validation / out-of-fold) probabilities."""
    source = Path(source)
    if not source.is_dir():
        return source
    candidates = [names.OOF_PROBABILITIES, names.VALID_PROBABILITIES] if oof else [names.TEST_PROBABILITIES]
    for name in candidates:
        if (source / name).exists():
            return source / name
    fix = (
        "a finished `maskcls cv` (or `maskcls train`) writes them"
        if oof
        else f"`maskcls predict {source} --data DATA` writes it; --oof combines out-of-fold probabilities"
    )
    raise UserError(f"{source}: no {' or '.join(candidates)} ({fix})")


def soft_vote(probabilities: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    stacked = np.stack(probabilities)
    return np.tensordot(weights / weights.sum(), stacked, axes=1)


def hard_vote(probabilities: list[np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, vote shares): the weighted majority of argmax votes, ties by summed probability."""
    rows = len(probabilities[0])
    votes = np.zeros((rows, NUM_CLASSES))
    summed = np.zeros((rows, NUM_CLASSES))
    for weight, probs in zip(weights, probabilities, strict=True):
        votes[np.arange(rows), probs.argmax(axis=1)] += weight
        summed += weight * probs
    tied = np.isclose(votes, votes.max(axis=1, keepdims=True))
    classes = np.where(tied, summed, -np.inf).argmax(axis=1)  # argmax takes the lowest index on equal sums
    return classes, votes / weights.sum()


def ensemble(
    sources: list[str | Path],
    method: str = "soft",
    weights: list[float] | None = None,
    oof: bool = False,
    calibration: str | Path | None = None,
) -> Ensemble:
    """Combine probability files; ``calibration`` biases apply to the soft vote's probabilities."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if calibration is not None and method != "soft":
        raise UserError("calibration applies to a soft vote (calibrate its OOF probabilities, then vote soft)")
    files = [input_file(source, oof) for source in sources]
    if weights is None:
        weights = [1.0] * len(files)
    if len(weights) != len(files):
        raise UserError(f"weights: {len(weights)} values for {len(files)} inputs")
    if any(weight < 0 for weight in weights) or sum(weights) <= 0:
        raise UserError("weights must be non-negative with a positive sum")
    frames = [read_probabilities(path) for path in files]
    key = shared_key(frames, files)
    aligned = [align(frame, frames[0], key, path, files[0]) for frame, path in zip(frames, files, strict=True)]
    probabilities = [frame[PROBABILITY_COLUMNS].to_numpy(dtype=float) for frame in aligned]
    weight_array = np.asarray(weights, dtype=float)
    if method == "soft":
        combined = soft_vote(probabilities, weight_array)
    else:
        classes, combined = hard_vote(probabilities, weight_array)
    table = pd.DataFrame(combined, columns=PROBABILITY_COLUMNS)
    if all(AGE_ESTIMATE_COLUMN in frame for frame in aligned):  # the weighted mean of the age estimates
        estimates = [frame[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float)[:, None] for frame in aligned]
        table[AGE_ESTIMATE_COLUMN] = soft_vote(estimates, weight_array)[:, 0]
    elif any(AGE_ESTIMATE_COLUMN in frame for frame in aligned):
        log.warning(age_estimate_dropped([path for path, frame in zip(files, aligned, strict=True)
                                          if AGE_ESTIMATE_COLUMN not in frame]))  # fmt: skip
    adjustments = read_calibration(calibration) if calibration is not None else None
    if method == "soft":
        if adjustments is not None:
            table = calibrate_table(table, adjustments)
        classes = table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1)
    for column in ("age", "fold", "target"):  # out-of-fold inputs keep what calibrate and audit need
        if column in frames[0].columns:
            table.insert(0, column, frames[0][column].to_numpy())
    table.insert(0, key, frames[0][key].to_numpy())
    return Ensemble(key, table, classes, adjustments)


def age_estimate_dropped(without: list) -> str:
    return (
        f"the ensemble has no {AGE_ESTIMATE_COLUMN}: {', '.join(map(str, without))} give none (another age head), "
        "so calibrate can learn no age borders from it; combine models whose age heads estimate years"
    )


def shared_key(frames: list[pd.DataFrame], files: list[Path]) -> str:
    for key in KEYS:
        if all(key in frame.columns for frame in frames):
            return key
    raise UserError(f"inputs do not share an ImageID or path column: {', '.join(map(str, files))}")


def align(frame: pd.DataFrame, first: pd.DataFrame, key: str, path: Path, first_path: Path) -> pd.DataFrame:
    """``frame``'s rows in ``first``'s order; both must hold the same set of keys."""
    if frame[key].duplicated().any():
        raise UserError(f"{path}: {key} {frame[key][frame[key].duplicated()].iloc[0]!r} appears twice")
    missing = set(first[key]) - set(frame[key])
    extra = set(frame[key]) - set(first[key])
    if missing or extra:
        example = next(iter(missing or extra))
        where = f"missing from {path}" if missing else f"not in {first_path}"
        raise UserError(
            f"{path}: rows differ from {first_path} ({len(missing) + len(extra)} keys, e.g. {example!r} {where})"
        )
    return frame.set_index(key).loc[first[key]].reset_index()
