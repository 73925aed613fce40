"""``calibrate(oof)``: per-class additive biases on the log-probabilities that raise macro F1.

Macro F1 rewards the rare classes (60+, incorrect mask) more than argmax of well-calibrated
probabilities does. A bias per class, added to log p before the argmax, moves the decision
borders; the biases are found by coordinate ascent on the out-of-fold probabilities.

The guard against fitting the noise: for each fold, biases fitted on the other folds predict the
held-out fold; the pooled held-out macro F1 is the honest estimate. When it is not above the
uncalibrated F1, the calibration is written with zero biases (and says so).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.errors import UserError
from maskcls.files import write_json_atomic
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS
from maskcls.metrics import macro_f1
from maskcls.rundir import names
from maskcls.rundir.tables import read_out_of_fold

BIAS_STEPS = np.round(np.arange(-2.0, 2.0001, 0.1), 2)
EPSILON = 1e-7


@dataclass
class Calibration:
    biases: list[float]
    oof_f1_before: float
    oof_f1_after: float  # with the written biases, on the rows they were fitted on (optimistic)
    heldout_f1_after: float  # each fold predicted with biases fitted on the other folds (honest)
    guard_passed: bool
    images: int
    folds: int
    source: str

    def write(self, path: str | Path) -> Path:
        write_json_atomic(path, asdict(self))
        return Path(path)


def read_calibration(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        biases = np.asarray(json.loads(path.read_text(encoding="utf-8"))["biases"], dtype=np.float64)
    except FileNotFoundError:
        raise UserError(f"{path}: calibration file not found (make one with maskcls calibrate)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a calibration file (expected JSON with 18 'biases')") from None
    if biases.shape != (NUM_CLASSES,) or not np.isfinite(biases).all():
        raise UserError(f"{path}: 'biases' must be 18 finite numbers")
    return biases


def apply_biases(probabilities: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """softmax(log p + b): probabilities whose argmax is the calibrated decision."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, None)) + biases
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def calibrate_table(table: pd.DataFrame, biases: np.ndarray) -> pd.DataFrame:
    """A copy of a probabilities table (p0..p17 columns) with the biases applied."""
    calibrated = table.copy()
    calibrated[PROBABILITY_COLUMNS] = apply_biases(table[PROBABILITY_COLUMNS].to_numpy(), biases)
    return calibrated


def fit_biases(log_probabilities: np.ndarray, target: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Coordinate ascent over ``BIAS_STEPS`` per class; only a strict gain moves a bias."""
    biases = np.zeros(NUM_CLASSES)
    best = macro_f1(target, log_probabilities.argmax(axis=1))
    for _ in range(rounds):
        improved = False
        for k in range(NUM_CLASSES):
            for step in BIAS_STEPS:
                trial = biases.copy()
                trial[k] = step
                score = macro_f1(target, (log_probabilities + trial).argmax(axis=1))
                if score > best + 1e-12:
                    best, biases, improved = score, trial, True
        if not improved:
            break
    return biases


def calibrate(source: str | Path) -> Calibration:
    table, path = read_out_of_fold(source, {"target", "fold"}, "calibrate")
    log_probabilities = np.log(np.clip(table[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64), EPSILON, None))
    target, folds = table["target"].to_numpy(), table["fold"].to_numpy()
    if len(np.unique(folds)) < 2:
        raise UserError(f"{path}: one fold only; the overfitting guard needs at least two")
    heldout = np.empty(len(table), dtype=np.int64)
    for fold in np.unique(folds):
        inside = folds != fold
        biases = fit_biases(log_probabilities[inside], target[inside])
        heldout[~inside] = (log_probabilities[~inside] + biases).argmax(axis=1)
    before = macro_f1(target, log_probabilities.argmax(axis=1))
    heldout_after = macro_f1(target, heldout)
    guard_passed = heldout_after > before
    biases = fit_biases(log_probabilities, target) if guard_passed else np.zeros(NUM_CLASSES)
    return Calibration(
        biases=[round(float(value), 2) for value in biases],
        oof_f1_before=round(before, 6),
        oof_f1_after=round(macro_f1(target, (log_probabilities + biases).argmax(axis=1)), 6),
        heldout_f1_after=round(heldout_after, 6),
        guard_passed=bool(guard_passed),
        images=len(table),
        folds=len(np.unique(folds)),
        source=str(path),
    )


def default_path(source: str | Path) -> Path:
    source = Path(source)
    return source / names.CALIBRATION if source.is_dir() else source.with_suffix(".calibration.json")
