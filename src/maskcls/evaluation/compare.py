"""``maskcls compare``: which experiment is better on the training people, and how sure.

A real competition hides its answers, so experiments are chosen by their CV F1; two CV F1s 0.01
apart may swap with other people drawn. For each cv group (or out-of-fold CSV) this gives the
out-of-fold macro F1 (argmax of the probabilities, no calibration), its 90% interval over
bootstrap resamples of the training people (each with all their photos, within their gender x age
group, as ``score`` resamples the test people), and from the second source on the share of the
same resamples in which it beats the first. The sources must hold the same photos with the same
labels (the rows are matched by path, in any order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.errors import UserError
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.metrics import compare_over_people, macro_f1
from maskcls.rundir.tables import read_out_of_fold

OOF_COLUMNS = {"path", "profile", "target"}


@dataclass(frozen=True)
class Comparison:
    source: str
    f1: float
    interval: tuple[float, float]
    share_beating_first: float | None  # None for the first source


def compare_out_of_fold(sources: list[str | Path]) -> list[Comparison]:
    if len(sources) < 2:
        raise UserError("compare needs at least two cv groups (or out-of-fold CSVs)")
    tables = [read_out_of_fold(source, OOF_COLUMNS, "compare") for source in sources]
    first, first_path = tables[0]
    aligned = [first] + [rows_in_order_of(first, table, first_path, path) for table, path in tables[1:]]
    truth = first["target"].to_numpy()
    predictions = [table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1) for table in aligned]
    compared = compare_over_people(truth, predictions, first["profile"].to_numpy())
    return [
        Comparison(str(source), macro_f1(truth, predicted), over_people.interval, over_people.share_beating_first)
        for source, predicted, over_people in zip(sources, predictions, compared, strict=True)
    ]


def rows_in_order_of(first: pd.DataFrame, table: pd.DataFrame, first_path: Path, path: Path) -> pd.DataFrame:
    """``table``'s rows in ``first``'s order of paths; the same photos and labels or a UserError."""
    missing = sorted(set(first["path"]) - set(table["path"]))
    extra = sorted(set(table["path"]) - set(first["path"]))
    what = None
    if missing:
        what = f"lacks {missing[0]}"
    elif extra:
        what = f"has {extra[0]} that {first_path} lacks"
    elif len(table) != len(first):
        what = "repeats rows"
    if what:
        raise UserError(f"{path}: not the same photos as {first_path} ({what}): compare needs the same training set")
    aligned = table.set_index("path").loc[first["path"]].reset_index()
    differs = np.flatnonzero(aligned["target"].to_numpy() != first["target"].to_numpy())
    if len(differs):
        photo = first["path"].iloc[differs[0]]
        raise UserError(f"{path}: {photo} has another label than in {first_path} (data.corrections?)")
    return aligned
