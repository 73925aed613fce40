"""A teacher's soft labels: its 18-class probabilities per photo, for distillation.

``teacher-HASH.csv`` (written by ``maskcls distill``): ``path`` (relative to the dataset folder:
``train/images/...`` or ``eval/images/...``) and ``p0..p17``. A run with ``data.teacher: FILE``
learns them on its training photos (with the share ``train.distill`` of the loss) and trains on
the listed test photos too, labelled with the teacher's most likely class (ages: a typical age
of that group), never validating on them. Rows with a ``fold`` column are for the run of that fold
only (``maskcls pseudo --soft``: each fold's own first-round model as its teacher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.data.pseudo import TYPICAL_AGES, added_rows, read_added_photos
from maskcls.errors import DataError
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS, decode_classes

EVAL_PREFIX = "eval/"


def read_teacher(path: str | Path, root: str | Path, fold: int = 0) -> pd.DataFrame:
    """The teacher's table (path, p0..p17; with a ``fold`` column, the rows of ``fold`` only),
    checked: columns, probabilities, photos on disk."""
    columns = ["path", *PROBABILITY_COLUMNS]
    frame = read_added_photos(path, root, fold, columns, "data.teacher", ["path", f"p0..p{NUM_CLASSES - 1}"])
    values = frame[PROBABILITY_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    wrong = np.flatnonzero(~np.isfinite(values).all(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-3))
    if len(wrong):
        line = frame.index[wrong[0]] + 2  # the header is line 1
        raise DataError(f"{path}: line {line}: the 18 probabilities must be numbers summing to 1")
    return frame.reset_index(drop=True)


def teacher_test_rows(teacher: pd.DataFrame) -> pd.DataFrame:
    """The teacher's test photos as training-table rows (``teacher:PATH``), labelled with its most
    likely class and a typical age of that class's group."""
    test = teacher[teacher["path"].astype(str).str.startswith(EVAL_PREFIX)]
    mask, gender, age = decode_classes(test[PROBABILITY_COLUMNS].to_numpy(dtype=float).argmax(axis=1))
    return added_rows(test["path"], mask, gender, np.asarray(TYPICAL_AGES)[age], "teacher")


def teacher_probabilities_of(teacher: pd.DataFrame, paths: pd.Series) -> np.ndarray:
    """(N, 18): the teacher's probabilities of each photo of ``paths``; NaN where it has none."""
    by_path = teacher.drop_duplicates("path", keep="last").set_index("path")[PROBABILITY_COLUMNS]
    return by_path.reindex(paths.astype(str)).to_numpy(dtype=np.float64)
