"""``calibrate(oof)``: learned age borders and per-class biases that raise macro F1.

Macro F1 rewards the rare classes (60+, incorrect mask) more than argmax of well-calibrated
probabilities does. A bias per class, added to log p before the argmax, moves the decision
borders; the biases are found by coordinate ascent on the out-of-fold probabilities.

The guard against fitting the noise: for each fold, biases fitted on the other folds predict the
held-out fold (with the age borders, when learned, also fitted on the other folds only); the pooled
held-out macro F1 is the honest estimate. When it is not above the
uncalibrated F1, the calibration is written with zero biases (and says so).

Before the biases, for a model that estimates the age in years (an ``age_estimate`` column),
the two age borders are learned the same way (:mod:`maskcls.evaluation.age_borders`), under the
same held-out guard; the biases are then fitted on the probabilities with the learned borders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.errors import UserError
from maskcls.evaluation.age_borders import (
    fit_borders_and_scale,
    held_out_borders,
    with_age_borders,
)
from maskcls.files import read_json, write_json_atomic
from maskcls.labels import (
    AGE_ESTIMATE_COLUMN,
    NUM_CLASSES,
    PROBABILITY_COLUMNS,
    split_outputs,
)
from maskcls.metrics import macro_f1
from maskcls.rundir import names
from maskcls.rundir.tables import read_out_of_fold

log = logging.getLogger("maskcls")

BIAS_STEPS = np.round(np.arange(-2.0, 2.0001, 0.1), 2)
EPSILON = 1e-7


@dataclass
class AgeBorders:
    """Borders learned on the age estimate, and the Laplace scale of its error (years)."""

    borders: list[float]  # the estimate below borders[0] is <30, from borders[1] on 60+
    scale: float  # out-of-fold mean absolute error of the estimate
    oof_f1_before: float  # the model's own age groups
    heldout_f1_after: float  # each fold cut at borders learned on the other folds
    fold_borders: list[list[float]]  # those borders, per held-out fold
    guard_passed: bool  # borders are used only when the held-out F1 rose
    fold_scales: list[float] = field(default_factory=list)  # the scale fitted with each fold's borders


@dataclass
class Calibration:
    biases: list[float]
    oof_f1_before: float | None = None
    oof_f1_after: float | None = None  # with the written biases, on the rows they were fitted on (optimistic)
    heldout_f1_after: float | None = None  # each fold predicted with biases fitted on the other folds (honest)
    guard_passed: bool = True
    images: int = 0
    folds: int = 0
    source: str = ""  # the out-of-fold file it was fitted on
    age: AgeBorders | None = None  # for models that estimate the age in years
    fold_biases: list[list[float]] = field(default_factory=list)  # per fold: the biases fitted on the other folds
    fitted_on: str = ""  # read back: the out-of-fold file it was fitted on (``source`` then names this file)

    def write(self, path: str | Path) -> Path:
        record = asdict(self)
        record.pop("fitted_on")
        write_json_atomic(path, record)
        return Path(path)

    @property
    def age_borders(self) -> AgeBorders | None:
        """The learned borders when they passed their guard."""
        return self.age if self.age is not None and self.age.guard_passed else None


def read_calibration(path: str | Path) -> Calibration:
    """What applying needs: ``biases`` (18 numbers, required) and the learned ``age`` borders."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        biases = np.asarray(record["biases"], dtype=np.float64)
        age = AgeBorders(**record["age"]) if record.get("age") else None
        fold_biases = np.asarray(record.get("fold_biases", []), dtype=np.float64).reshape(-1, NUM_CLASSES)
        calibration = Calibration(
            biases=list(biases),
            source=str(path),
            age=age,
            fold_biases=fold_biases.tolist(),
            guard_passed=bool(record.get("guard_passed", True)),
            folds=int(record.get("folds", 0)),
            fitted_on=record.get("source", ""),
        )
    except FileNotFoundError:
        raise UserError(f"{path}: calibration file not found (make one with maskcls calibrate)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise UserError(f"{path}: not a calibration file (expected the JSON maskcls calibrate writes)") from None
    if biases.shape != (NUM_CLASSES,) or not np.isfinite(biases).all():
        raise UserError(f"{path}: 'biases' must be 18 finite numbers")
    if not np.isfinite(fold_biases).all():
        raise UserError(f"{path}: 'fold_biases' must be lists of 18 finite numbers")
    if age is not None and not (len(age.borders) == 2 and age.borders[0] < age.borders[1] and age.scale > 0):
        raise UserError(f"{path}: 'age' must hold two increasing borders and a positive scale")
    return calibration


def cross_validated_f1(path: str | Path) -> float | None:
    """The out-of-fold macro F1 of the decisions a calibration file makes, each fold decided with
    what was learned on the other folds: the biases' held-out F1 where they were kept, else the
    learned borders' where they were, else the models' own (nothing learned); None where the file
    is missing or holds no such figures (one written by hand)."""
    record = read_json(path, missing={})
    age = record.get("age") or {}
    if record.get("guard_passed") and any(record.get("biases", [])):
        return record.get("heldout_f1_after")
    if age.get("guard_passed"):
        return age.get("heldout_f1_after")
    return record.get("oof_f1_before")


def fitted_on_sources(calibration: Calibration, sources: list[str | Path]) -> bool:
    """Whether ``calibration`` was learned on the out-of-fold probabilities of one of ``sources``
    (a cv group, or the folder of such a CSV); True where the file does not say what it was fitted on."""
    if not calibration.fitted_on:
        return True
    fitted_on = Path(calibration.fitted_on)
    folder = (fitted_on.parent if fitted_on.suffix else fitted_on).resolve()
    return any(Path(source).resolve() == folder for source in sources)


def fitted_on_runs(calibration: Calibration | None, runs: list[Path]) -> bool:
    """Whether ``calibration`` was learned on the out-of-fold table of the one cv group whose fold
    runs ``runs`` are, all of them (so that each fold's own rows shaped it, unless decided by
    :func:`held_out_classes`)."""
    groups = {Path(run).resolve().parent for run in runs}
    return (
        calibration is not None
        and bool(calibration.fitted_on)
        and calibration.folds == len(runs)
        and len(groups) == 1
        and fitted_on_sources(calibration, list(groups))
    )


def made_by(calibration: Calibration | None, sources: list[str | Path]) -> tuple[str | None, bool]:
    """What a submission's record says of the calibration that decided it: its file (None: the
    models' own argmax) and whether it was fitted on the out-of-fold probabilities of ``sources``."""
    if calibration is None:
        return None, True
    return calibration.source, fitted_on_sources(calibration, sources)


def calibration_for(sources: list[str | Path], choice: str | Path | None) -> Calibration | None:
    """The calibration predictions of ``sources`` get: ``"auto"``: the source's own
    ``calibration.json`` when there is one source and it has one (said in the log), None: none,
    else the file ``choice`` names."""
    if choice is None:
        return None
    if str(choice) != "auto":
        return read_calibration(choice)
    path = Path(sources[0]) / names.CALIBRATION if len(sources) == 1 else None
    if path is None or not path.exists():
        return None
    log.info(f"applying {path} (learned age borders and class biases; calibration none for the raw model)")
    return read_calibration(path)


def say_if_age_uncut(source: str | Path, choice: str | Path | None, found: Calibration | None, estimates_age: bool):
    """One warning where a model whose age head estimates years runs with ``"auto"`` calibration and
    none was found: its own cut at 30/60 is where the estimate is least sure."""
    if str(choice) == "auto" and found is None and estimates_age:
        log.warning(uncut_age_estimate(source))


def uncut_age_estimate(source: str | Path) -> str:
    """The word for an age head over years predicted without learned borders."""
    return (
        f"{source}: its age head estimates years, cut here at the model's own 30/60: no calibration.json "
        f"(`maskcls calibrate GROUP` before predict learns the borders from a cv group's out-of-fold ages, "
        f"usually several points of macro F1; --calibration none: the raw cut, without this word)"
    )


def apply_calibration(probabilities: np.ndarray, estimates: np.ndarray | None, calibration: Calibration):
    """The learned age borders (when they passed their guard), then the biases."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    borders = calibration.age_borders
    if borders is not None:
        if estimates is None:
            raise UserError(
                f"{calibration.source}: it cuts the age estimate at learned borders, but these "
                f"probabilities have no {AGE_ESTIMATE_COLUMN} column (a model with another age head?)"
            )
        probabilities = with_age_borders(probabilities, estimates, borders.borders, borders.scale)
    return apply_biases(probabilities, np.asarray(calibration.biases, dtype=np.float64))


def calibrated_classes(outputs: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """The classes of a model's outputs (p0..p17 [, age estimate]) with ``calibration`` applied
    (the argmax of the probabilities when None)."""
    probabilities, estimates = split_outputs(outputs)
    if calibration is not None:
        probabilities = apply_calibration(probabilities, estimates, calibration)
    return np.asarray(probabilities).argmax(axis=1)


def held_out_classes(outputs: np.ndarray, folds: np.ndarray | None, calibration: Calibration | None) -> np.ndarray:
    """The classes of out-of-fold outputs as ``calibration``'s held-out F1 decides them: the rows of
    fold k (numbered as in the out-of-fold table) with the borders and biases learned without them,
    where it kept borders and biases (so no row is decided by what its own label shaped). Without
    ``folds`` (a calibration that never saw these rows) or a calibration: :func:`calibrated_classes`."""
    if folds is None or calibration is None:
        return calibrated_classes(outputs, calibration)
    classes = np.empty(len(outputs), dtype=np.int64)
    for fold in np.unique(folds):
        rows = folds == fold
        classes[rows] = calibrated_classes(outputs[rows], fold_calibration(calibration, int(fold)))
    return classes


def fold_calibration(calibration: Calibration, fold: int) -> Calibration:
    """What ``calibrate`` learned on the folds other than ``fold``: their borders and scale, and
    their biases where the biases passed their guard (zero biases where they did not, as written).
    A file without per-fold values (written before they were kept) gives its own for every fold."""
    age = calibration.age
    if age is not None and age.fold_borders:
        scales = age.fold_scales or [age.scale] * len(age.fold_borders)
        age = replace(age, borders=age.fold_borders[fold], scale=scales[fold])
    kept_biases = calibration.guard_passed and calibration.fold_biases
    return replace(calibration, biases=calibration.fold_biases[fold] if kept_biases else calibration.biases, age=age)


def clipped_log(probabilities: np.ndarray) -> np.ndarray:
    """log p (float64), with p floored at ``EPSILON``: what the biases are added to."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, None))


def apply_biases(probabilities: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """softmax(log p + b): probabilities whose argmax is the calibrated decision."""
    logits = clipped_log(probabilities) + biases
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def calibrate_table(table: pd.DataFrame, calibration: Calibration) -> pd.DataFrame:
    """A copy of a probabilities table (p0..p17 [, age_estimate]) with the calibration applied."""
    calibrated = table.copy()
    estimates = table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float) if AGE_ESTIMATE_COLUMN in table else None
    calibrated[PROBABILITY_COLUMNS] = apply_calibration(table[PROBABILITY_COLUMNS].to_numpy(), estimates, calibration)
    return calibrated


def fit_biases(
    log_probabilities: np.ndarray, target: np.ndarray, rounds: int = 3, directions: np.ndarray | None = None
) -> np.ndarray:
    """Coordinate ascent over ``BIAS_STEPS`` per class; only a strict gain moves a bias. With
    ``directions`` (k x 18), one coordinate per row instead, the biases their weighted sum (one
    bias per mask, gender and age value, say)."""
    directions = np.eye(NUM_CLASSES) if directions is None else directions
    weights = np.zeros(len(directions))
    best = macro_f1(target, log_probabilities.argmax(axis=1))
    for _ in range(rounds):
        improved = False
        for k in range(len(directions)):
            for step in BIAS_STEPS:
                trial = weights.copy()
                trial[k] = step
                score = macro_f1(target, (log_probabilities + trial @ directions).argmax(axis=1))
                if score > best + 1e-12:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights @ directions


def calibrate(source: str | Path) -> Calibration:
    table, path = read_out_of_fold(source, {"target", "fold"}, "calibrate")
    probabilities = table[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64)
    target, folds = table["target"].to_numpy(), table["fold"].to_numpy()
    if len(np.unique(folds)) < 2:
        raise UserError(f"{path}: one fold only; the overfitting guard needs at least two")
    age = None
    fold_probabilities = [probabilities] * len(np.unique(folds))  # what each held-out fold's biases see
    if {AGE_ESTIMATE_COLUMN, "age"} <= set(table.columns):
        estimates = table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=np.float64)
        age = learn_age_borders(probabilities, estimates, table["age"].to_numpy(dtype=np.float64), target, folds)
        if age.guard_passed:  # the bias guard's held-out fold must not have shaped the borders either
            fold_probabilities = [
                with_age_borders(probabilities, estimates, borders, scale)
                for borders, scale in zip(age.fold_borders, age.fold_scales, strict=True)
            ]
            probabilities = with_age_borders(probabilities, estimates, age.borders, age.scale)
    log_probabilities = clipped_log(probabilities)
    heldout, fold_biases = held_out_biases([clipped_log(seen) for seen in fold_probabilities], target, folds)
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
        age=age,
        fold_biases=[[round(float(value), 2) for value in biases] for biases in fold_biases],
    )


def held_out_biases(
    fold_log_probabilities: list[np.ndarray], target: np.ndarray, folds: np.ndarray, fit=fit_biases
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each fold's rows decided with the biases ``fit`` learns on the other folds, every fold's rows
    seen as its entry of ``fold_log_probabilities`` shows them (cut at the age borders learned without
    it): the classes, and each fold's biases."""
    classes = np.empty(len(target), dtype=np.int64)
    fold_biases = []
    for fold, seen in zip(np.unique(folds), fold_log_probabilities, strict=True):
        inside = folds != fold
        biases = fit(seen[inside], target[inside])
        classes[~inside] = (seen[~inside] + biases).argmax(axis=1)
        fold_biases.append(biases)
    return classes, fold_biases


def learn_age_borders(
    probabilities: np.ndarray, estimates: np.ndarray, ages: np.ndarray, target: np.ndarray, folds: np.ndarray
) -> AgeBorders:
    """Borders fitted on all rows, kept only when borders fitted on the other folds raise each
    held-out fold's pooled macro F1 above the model's own age groups. The noise scale of each
    fit is the mean absolute error of the rows it is fitted on."""
    heldout, fold_borders, fold_scales = held_out_borders(probabilities, estimates, ages, target, folds)
    before = macro_f1(target, probabilities.argmax(axis=1))
    heldout_after = macro_f1(target, heldout)
    borders, scale = fit_borders_and_scale(probabilities, estimates, ages, target)
    return AgeBorders(
        borders=list(borders),
        scale=scale,
        oof_f1_before=round(before, 6),
        heldout_f1_after=round(heldout_after, 6),
        fold_borders=fold_borders,
        guard_passed=bool(heldout_after > before),
        fold_scales=fold_scales,
    )


def default_path(source: str | Path) -> Path:
    source = Path(source)
    return source / names.CALIBRATION if source.is_dir() else source.with_suffix(".calibration.json")
