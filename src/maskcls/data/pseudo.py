"""Pseudo-labels: test photos with the labels an ensemble gave them, as extra training photos.

``pseudo_labels-HASH.csv`` (written by ``maskcls pseudo``): ``path`` (relative to the dataset folder,
``eval/images/...``), ``mask``, ``gender``, ``age`` (years: the model's age estimate when it has
one, else a typical age of the predicted group), ``probability`` (of the 18-class label), and
optionally ``fold``: the rows for the run of that fold only. A run with ``data.pseudo: FILE``
trains on these photos; they are never validated on, so the out-of-fold scores stay on real
labels only."""

from __future__ import annotations

from pathlib import Path

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
    path, root = Path(path), Path(root)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: pseudo-label file not found (data.pseudo)") from None
    missing = [column for column in PSEUDO_COLUMNS[:4] if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(PSEUDO_COLUMNS)})")
    if "fold" in frame.columns:
        frame = frame[frame["fold"] == fold]
    absent = [relative for relative in frame["path"] if not (root / relative).is_file()]
    if absent:
        raise DataError(f"{path}: {len(absent)} photo(s) not in {root}, e.g. {absent[0]}")
    rows = pd.DataFrame(
        {
            "profile": "pseudo:" + frame["path"].astype(str),
            "person_id": "",
            "gender": frame["gender"].astype(int),
            "race": "",
            "age": frame["age"].round().astype(int),
            "stem": "pseudo",
            "mask": frame["mask"].astype(int),
            "path": frame["path"].astype(str),
        }  # fmt: skip
    )
    return rows[TRAIN_TABLE_COLUMNS]
