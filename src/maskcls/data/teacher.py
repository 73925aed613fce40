"""A teacher's soft labels: its 18-class probabilities per photo, for distillation.

``teacher-HASH.csv`` (written by ``maskcls distill``): ``path`` (relative to the dataset folder:
``train/images/...`` or ``eval/images/...``) and ``p0..p17``. A run with ``data.teacher: FILE``
learns them on its training photos (with the share ``train.distill`` of the loss) and trains on
the listed test photos too, labelled with the teacher's most likely class (ages: the teacher's
estimate in years from an optional ``age`` column, else a typical age of that group), never
validating on them. Rows with a ``fold`` column are for the run of that fold
only (``maskcls pseudo --soft``: each fold's own first-round model as its teacher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.data.pseudo import TYPICAL_AGES, added_rows, read_added_photos
from maskcls.errors import DataError
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS, decode_classes

EVAL_PREFIX = "eval/"
AGE_COLUMN = "age"
"""Optional: the teacher's age estimate of each test photo in years (a model whose age head gives one)."""


def read_teacher(path: str | Path, root: str | Path, fold: int = 0) -> pd.DataFrame:
    """The teacher's table (path, p0..p17; with a ``fold`` column, the rows of ``fold`` only),
    checked: columns, probabilities, photos on disk."""
    columns = ["path", *PROBABILITY_COLUMNS]
    frame = read_added_photos(path, root, fold, columns, "data.teacher", ["path", f"p0..p{NUM_CLASSES - 1}"])
    values = frame[PROBABILITY_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    wrong = np.flatnonzero(~np.isfinite(values).all(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-3))
    if len(wrong):
        raise DataError(f"{path}: line {line_of(frame, wrong[0])}: the 18 probabilities must be numbers summing to 1")
    if AGE_COLUMN in frame.columns:
        ages = pd.to_numeric(frame[AGE_COLUMN], errors="coerce").to_numpy(dtype=float)
        unaged = np.flatnonzero(is_test_photo(frame["path"]).to_numpy() & ~np.isfinite(ages))
        if len(unaged):
            raise DataError(f"{path}: line {line_of(frame, unaged[0])}: a test photo's age must be a number of years")
    return frame.reset_index(drop=True)


def line_of(frame: pd.DataFrame, position: int) -> int:
    """The file line of the row at ``position`` (the header is line 1; the row index is the file's)."""
    return int(frame.index[position]) + 2


def is_test_photo(paths: pd.Series) -> pd.Series:
    return paths.astype(str).str.startswith(EVAL_PREFIX)


def teacher_test_rows(teacher: pd.DataFrame) -> pd.DataFrame:
    """The teacher's test photos as training-table rows (``teacher:PATH``), labelled with its most
    likely class, and aged with its estimate in years (``age``) when it has one, else with a typical
    age of that class's group."""
    test = teacher[is_test_photo(teacher["path"])]
    mask, gender, group = decode_classes(test[PROBABILITY_COLUMNS].to_numpy(dtype=float).argmax(axis=1))
    if AGE_COLUMN in test.columns:
        ages = pd.to_numeric(test[AGE_COLUMN]).round().to_numpy()  # an estimate stands for the year it rounds to
    else:
        ages = np.asarray(TYPICAL_AGES)[group]
    return added_rows(test["path"], mask, gender, ages, "teacher")


def teacher_probabilities_of(teacher: pd.DataFrame, paths: pd.Series) -> np.ndarray:
    """(N, 18): the teacher's probabilities of each photo of ``paths``; NaN where it has none."""
    by_path = teacher.drop_duplicates("path", keep="last").set_index("path")[PROBABILITY_COLUMNS]
    return by_path.reindex(paths.astype(str)).to_numpy(dtype=np.float64)
