"""What the library's long calls return: small, typed records of what they found, so that a
caller (the CLI, a notebook) never re-reads the files a call has just written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ATTRIBUTES = ("mask", "gender", "age")


def selection_f1(row: dict[str, Any]) -> float:
    """What an epoch (a ``summary.csv`` row) or a finished run (``result.json``) is judged by: best.pt,
    early stopping, tune's trials. The valid macro F1; for a model that estimates the age, that F1
    with the age borders fitted on the validation rows (``valid_f1_borders``): such a model is cut
    where ``calibrate`` learns, not at its own 30 / 60, whose F1 jumps between epochs while the age
    error falls (by it, five 5-fold groups of the recipe kept an epoch before the last in 14 of 25
    folds, one the first of 4)."""
    return float(row.get("valid_f1_borders", row["valid_f1"]))


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """One trained run: its folder and its best epoch's validation metrics."""

    folder: Path
    best_epoch: int  # counted from 1; -1 when no epoch ran
    epochs_run: int
    valid_f1: float | None  # macro F1 over the 18 classes, the competition's metric
    valid_accuracy: float | None
    valid_f1_by_attribute: dict[str, float] = field(default_factory=dict)  # mask, gender, age
    valid_age_mae: float | None = None  # years, for heads that estimate an age
    valid_f1_borders: float | None = None  # for those heads: macro F1 at the borders fitted on the validation rows
    train_images_per_second: float = 0.0  # mean over the epochs
    seconds: float = 0.0

    @classmethod
    def from_rows(cls, folder: Path, rows: list[dict[str, Any]], best_epoch: int) -> FitResult:
        """From a run's per-epoch summary rows (``summary.csv``'s columns)."""
        best = next((row for row in rows if row["epoch"] == best_epoch), {})
        speeds = [row["train_images_per_second"] for row in rows]
        return cls(
            folder=Path(folder),
            best_epoch=best_epoch,
            epochs_run=len(rows),
            valid_f1=best.get("valid_f1"),
            valid_accuracy=best.get("valid_accuracy"),
            valid_f1_by_attribute={name: best[f"valid_f1_{name}"] for name in ATTRIBUTES if f"valid_f1_{name}" in best},
            valid_age_mae=best.get("valid_age_mae"),
            valid_f1_borders=best.get("valid_f1_borders"),
            train_images_per_second=sum(speeds) / len(speeds) if speeds else 0.0,
            seconds=round(sum(row["seconds"] for row in rows), 2),
        )

    @property
    def selected_f1(self) -> float | None:
        """The figure its best epoch was chosen by (:func:`selection_f1`); None when no epoch ran."""
        return self.valid_f1 if self.valid_f1_borders is None else self.valid_f1_borders


@dataclass(frozen=True, kw_only=True)
class CvResult:
    """A cross-validated group: the out-of-fold scores and each fold's."""

    folder: Path
    oof_f1: float  # macro F1 of every training image predicted by the fold that held it out
    oof_accuracy: float
    oof_f1_by_attribute: dict[str, float]
    fold_f1: list[float]  # each fold's best valid F1
    fold_f1_mean: float
    fold_f1_std: float
    images: int
    oof_age_mae: float | None = None
    oof_f1_borders: float | None = None  # a model that estimates the age: each fold cut at borders fitted on the others

    @property
    def selected_f1(self) -> float:
        """What tune ranks a cv trial by: the out-of-fold F1 at held-out borders where there is one."""
        return self.oof_f1 if self.oof_f1_borders is None else self.oof_f1_borders

    @classmethod
    def from_record(cls, folder: Path, record: dict[str, Any]) -> CvResult:
        """From the group's ``cv.json`` record."""
        return cls(
            folder=Path(folder),
            oof_f1=record["oof_f1"],
            oof_accuracy=record["oof_accuracy"],
            oof_f1_by_attribute={name: record[f"oof_f1_{name}"] for name in ATTRIBUTES},
            fold_f1=[fold["valid_f1"] for fold in record["folds"]],
            fold_f1_mean=record["fold_f1_mean"],
            fold_f1_std=record["fold_f1_std"],
            images=record["images"],
            oof_age_mae=record.get("oof_age_mae"),
            oof_f1_borders=record.get("oof_f1_borders"),
        )


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """A hyperparameter study: its trials and, once one completed, the best."""

    folder: Path
    trials: dict[str, int]  # complete, pruned, failed
    best: dict[str, Any] | None  # trial, value, params
    best_config: Path | None  # best.yaml, a recipe to train
    epochs_spent: int = 0

    @classmethod
    def from_record(cls, folder: Path, record: dict[str, Any], best_config: Path) -> StudyResult:
        """From the study's ``study.json`` record."""
        best = record.get("best")
        return cls(
            folder=Path(folder),
            trials=dict(record["trials"]),
            best=best,
            best_config=best_config if best else None,
            epochs_spent=record.get("epochs_spent", 0),
        )
