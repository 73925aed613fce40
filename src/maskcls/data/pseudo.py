"""Pseudo-labels: test photos with the labels an ensemble gave them, as extra training photos.

``pseudo_labels-HASH.csv`` (written by ``maskcls pseudo``): ``path`` (relative to the dataset folder,
``eval/images/...``), ``mask``, ``gender``, ``age`` (years: the model's age estimate when it has
one, else a typical age of the predicted group), ``probability`` (of the 18-class label), and
optionally ``fold``: the rows for the run of that fold only. A run with ``data.pseudo: FILE``
trains on these photos; they are never validated on, so the out-of-fold scores stay on real
labels only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.data.layout import TRAIN_TABLE_COLUMNS
from maskcls.errors import DataError

PSEUDO_COLUMNS = ["path", "mask", "gender", "age", "probability"]
TYPICAL_AGES = (22, 45, 70)
"""An age well inside each group (<30, 30-59, 60+), for photos whose model gives no estimate."""


def read_pseudo_labels(path: str | Path, root: str | Path, fold: int = 0) -> pd.DataFrame:
    """The pseudo-labelled photos (those of ``fold`` when the file has a ``fold`` column) as rows
    of the training table (each its own profile, ``pseudo:PATH``, so that no fold holds it out); a
    missing photo or column names the file."""
    frame = read_added_photos(path, root, fold, PSEUDO_COLUMNS[:4], "data.pseudo", PSEUDO_COLUMNS)
    return added_rows(frame["path"], frame["mask"], frame["gender"], frame["age"].round(), "pseudo")


def read_added_photos(
    path: str | Path, root: str | Path, fold: int, required: list[str], option: str, expected: list[str]
) -> pd.DataFrame:
    """A file of photos to add to the training photos (``data.pseudo``, ``data.teacher``): its rows
    for ``fold`` when it has a ``fold`` column (the file's own row index kept, for line numbers),
    checked for the ``required`` columns and for every photo in ``root``."""
    path, root = Path(path), Path(root)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found ({option})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(expected)})")
    if "fold" in frame.columns:
        frame = frame[frame["fold"] == fold]
    absent = [relative for relative in frame["path"] if not (root / relative).is_file()]
    if absent:
        raise DataError(f"{path}: {len(absent)} photo(s) not in {root}, e.g. {absent[0]}")
    return frame


def added_rows(paths, mask, gender, age, stem: str) -> pd.DataFrame:
    """Training-table rows for added photos: each its own profile (``STEM:PATH``), so that no fold
    holds it out."""
    paths = pd.Series(paths).astype(str).to_numpy()
    rows = pd.DataFrame(
        {
            "profile": [f"{stem}:{path}" for path in paths],
            "person_id": "",
            "gender": np.asarray(gender, dtype=int),
            "race": "",
            "age": np.asarray(age, dtype=int),
            "stem": stem,
            "mask": np.asarray(mask, dtype=int),
            "path": paths,
        }  # fmt: skip
    )
    return rows[TRAIN_TABLE_COLUMNS]
