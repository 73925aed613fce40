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

from maskcls.data.layout import TRAIN_TABLE_COLUMNS
from maskcls.data.pseudo import TYPICAL_AGES
from maskcls.errors import DataError
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS, decode_classes

EVAL_PREFIX = "eval/"


def read_teacher(path: str | Path, root: str | Path, fold: int = 0) -> pd.DataFrame:
    """The teacher's table (path, p0..p17; with a ``fold`` column, the rows of ``fold`` only),
    checked: columns, probabilities, photos on disk."""
    path, root = Path(path), Path(root)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: teacher file not found (data.teacher)") from None
    missing = [column for column in ["path", *PROBABILITY_COLUMNS] if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected path, p0..p{NUM_CLASSES - 1})")
    values = frame[PROBABILITY_COLUMNS].to_numpy(dtype=float)
    wrong = np.flatnonzero(~np.isfinite(values).all(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-3))
    if len(wrong):
        raise DataError(f"{path}: line {wrong[0] + 2}: the 18 probabilities must be numbers summing to 1")
    if "fold" in frame.columns:
        frame = frame[frame["fold"] == fold].reset_index(drop=True)
    absent = [relative for relative in frame["path"] if not (root / relative).is_file()]
    if absent:
        raise DataError(f"{path}: {len(absent)} photo(s) not in {root}, e.g. {absent[0]}")
    return frame


def teacher_test_rows(teacher: pd.DataFrame) -> pd.DataFrame:
    """The teacher's test photos as training-table rows (each its own profile, ``teacher:PATH``, so
    that no fold holds it out), labelled with its most likely class."""
    test = teacher[teacher["path"].astype(str).str.startswith(EVAL_PREFIX)]
    mask, gender, age = decode_classes(test[PROBABILITY_COLUMNS].to_numpy(dtype=float).argmax(axis=1))
    rows = pd.DataFrame(
        {
            "profile": "teacher:" + test["path"].astype(str),
            "person_id": "",
            "gender": gender,
            "race": "",
            "age": np.asarray(TYPICAL_AGES)[age],
            "stem": "teacher",
            "mask": mask,
            "path": test["path"].astype(str).to_numpy(),
        }  # fmt: skip
    )
    return rows[TRAIN_TABLE_COLUMNS]


def teacher_probabilities_of(teacher: pd.DataFrame, paths: pd.Series) -> np.ndarray:
    """(N, 18): the teacher's probabilities of each photo of ``paths``; NaN where it has none."""
    by_path = teacher.drop_duplicates("path", keep="last").set_index("path")[PROBABILITY_COLUMNS]
    return by_path.reindex(paths.astype(str)).to_numpy(dtype=np.float64)
