"""The data a run trains on: the image table (never truth/), the person-level split, the labels
with the training age borders and the real ones, and the images mapped from the cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.config import Config
from maskcls.data.cache import DecodedImages, cached_images
from maskcls.data.layout import read_dataset
from maskcls.data.pseudo import read_pseudo_labels
from maskcls.data.split import load_or_make_folds, make_holdout, split_rows
from maskcls.data.teacher import read_teacher, teacher_probabilities_of, teacher_test_rows
from maskcls.errors import UserError
from maskcls.labels import AGE_BORDERS, NUM_CLASSES, age_groups, class_name, encode_classes, output_columns
from maskcls.training.distributed import Distributed

log = logging.getLogger("maskcls")


@dataclass
class TrainingData:
    images: np.ndarray  # (N, H, W, 3) uint8: the cache's memory map (or DecodedImages)
    table: pd.DataFrame  # one row per image (layout reader's train table)
    train_labels: np.ndarray  # 18 classes with the training age borders
    true_labels: np.ndarray  # 18 classes with the real borders (for evaluation)
    train_rows: np.ndarray
    valid_rows: np.ndarray
    ages: np.ndarray  # age in years per image (what ordinal, regression and distribution heads learn)
    teacher: np.ndarray | None = None  # (N, 18) a teacher's probabilities per image (NaN: not labelled)

    @property
    def train_targets(self) -> np.ndarray:
        """The batches' targets: (N, 2) training class and age per image, then, with a teacher,
        its 18 probabilities (floats then: (N, 20))."""
        if self.teacher is None:
            return np.column_stack([self.train_labels, self.ages])
        return np.column_stack([self.train_labels, self.ages, self.teacher]).astype(np.float32)

    @property
    def true_targets(self) -> np.ndarray:
        return np.column_stack([self.true_labels, self.ages])

    def valid_probabilities(self, outputs: np.ndarray) -> pd.DataFrame:
        """``valid_probabilities.csv``'s rows: path, profile, target, age, then the outputs."""
        rows = self.table.iloc[self.valid_rows]
        frame = pd.DataFrame(outputs, columns=output_columns(outputs.shape[1]))
        frame.insert(0, "age", self.ages[self.valid_rows])
        frame.insert(0, "target", self.true_labels[self.valid_rows])
        frame.insert(0, "profile", rows["profile"].to_numpy())
        frame.insert(0, "path", rows["path"].to_numpy())
        return frame


def prepare_data_once(config: Config, runs_dir: str | Path, context: Distributed) -> TrainingData:
    """Rank 0 builds the cache and the folds file first; the other ranks then read them."""
    if not context.is_main:
        context.barrier()
    data = prepare_data(config, runs_dir, warn=context.is_main)
    if context.is_main:
        context.barrier()
    return data


def prepare_data(config: Config, runs_dir: str | Path, warn: bool = True) -> TrainingData:
    """Read the table (never truth/), split by person, and map the images from the cache."""
    root = Path(config.data.root)
    dataset = read_dataset(root, corrections=config.data.corrections, strict=config.data.strict)
    table = dataset.train
    if table.empty:
        raise UserError(f"{root}: no training images")
    if config.train.holdout is not None:
        folds = make_holdout(dataset.people, config.train.holdout, config.seed)
        fold = 0
    else:
        folds_file = Path(runs_dir) / "folds" / f"{root.name}-k{config.train.folds}-seed{config.seed}.csv"
        folds = load_or_make_folds(folds_file, dataset.people, config.train.folds, config.seed)
        fold = config.train.fold
        if not 0 <= fold < config.train.folds:
            raise UserError(f"train.fold={fold} is outside 0..{config.train.folds - 1}")
    train_rows, valid_rows = split_rows(table, folds, fold)
    if config.data.pseudo:  # after the split: every fold trains on them, none validates on them
        table, train_rows = with_extra_rows(table, train_rows, read_pseudo_labels(config.data.pseudo, root, fold))
    teacher = None
    if config.data.teacher:
        taught = read_teacher(config.data.teacher, root, fold)
        table, train_rows = with_extra_rows(table, train_rows, teacher_test_rows(taught))
        teacher = teacher_probabilities_of(taught, table["path"])
    paths, size = list(table["path"]), config.train.image_size
    if config.data.cache:
        images = cached_images(root, paths, size, config.train.cache_dir or Path(runs_dir) / "cache")
    else:
        images = DecodedImages(root, paths, size)
    ages = table["age"].to_numpy()
    mask, gender = table["mask"].to_numpy(), table["gender"].to_numpy()
    true_labels = encode_classes(mask, gender, age_groups(ages, AGE_BORDERS))
    if warn:
        for message in missing_class_warnings(true_labels, train_rows, valid_rows, fold):
            log.warning(message)
    return TrainingData(
        images=images,
        table=table,
        train_labels=encode_classes(mask, gender, age_groups(ages, config.data.age_borders)),
        true_labels=true_labels,
        train_rows=train_rows,
        valid_rows=valid_rows,
        ages=ages.astype(np.int64),
        teacher=teacher,
    )


def with_extra_rows(table: pd.DataFrame, train_rows: np.ndarray, extra: pd.DataFrame) -> tuple:
    """The table with ``extra`` rows appended, and the training rows with them (after the split:
    no fold validates on them)."""
    rows = np.concatenate([train_rows, np.arange(len(table), len(table) + len(extra))])
    return pd.concat([table, extra], ignore_index=True), rows


def missing_class_warnings(labels: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray, fold: int) -> list[str]:
    """One line per side of the split that lacks a class the dataset has."""
    present = set(np.unique(labels).tolist())
    messages = []
    for side, rows in (("training", train_rows), ("validation", valid_rows)):
        missing = sorted(present - set(np.unique(labels[rows]).tolist()))
        if missing and len(rows):
            listed = ", ".join(f"{k} ({class_name(k)})" for k in missing)
            messages.append(f"fold {fold}: the {side} part has no images of class {listed}")
    return messages


def balanced_weights(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per image 1 / (training images of its class), counted over ``rows`` only (the validation
    people must not change how often a training image is drawn); 0 outside ``rows``."""
    counts = np.bincount(labels[rows], minlength=NUM_CLASSES).astype(float)
    weights = np.zeros(len(labels))
    weights[rows] = 1.0 / counts[labels[rows]]
    return weights
