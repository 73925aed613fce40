"""The run folder's tables: probabilities (validation, out-of-fold, test), submissions.

A probabilities file has ``p0`` .. ``p17`` (:data:`maskcls.labels.PROBABILITY_COLUMNS`): after
``ImageID`` for the test set, in ``eval/info.csv`` order; after ``path``, ``profile`` and
``target`` (and ``fold``, out of fold) for training images. A submission is ``ImageID,ans``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.errors import UserError
from maskcls.files import read_json, write_json_atomic
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.rundir import names
from maskcls.rundir.folders import write_rows


def write_probabilities(path: str | Path, table: pd.DataFrame) -> None:
    write_rows(Path(path), table.to_dict("records"))


def write_submission(path: str | Path, image_ids, classes: np.ndarray) -> None:
    """``ImageID,ans`` in the given (info.csv) order."""
    rows = [{"ImageID": image_id, "ans": int(k)} for image_id, k in zip(image_ids, classes, strict=True)]
    write_rows(Path(path), rows)


def write_made_record(
    submission: str | Path,
    sources: list[Path],
    calibration: str | Path | None = None,
    fitted_here: bool = True,
    voted_f1: float | None = None,
) -> None:
    """Beside a submission (:func:`names.made_record`): the runs or groups it came from, the
    calibration file that decided it (None: the models' own argmax),
    ``calibration_fitted_elsewhere`` where that calibration was not fitted on these models'
    out-of-fold probabilities (``fitted_here`` False), and ``voted_f1`` where gender and age were
    voted per person: the held-out F1 of the voted decisions (``predict --group-people``'s check)."""
    record = {
        "sources": [str(Path(source).resolve()) for source in sources],
        "calibration": str(Path(calibration).resolve()) if calibration else None,
    }
    if calibration and not fitted_here:
        record["calibration_fitted_elsewhere"] = True
    if voted_f1 is not None:
        record["voted_f1"] = voted_f1
    write_json_atomic(names.made_record(submission), record)


def read_made_record(submission: str | Path) -> dict:
    """What :func:`write_made_record` kept beside a submission (empty where nothing was kept)."""
    return read_json(names.made_record(submission), missing={})


def read_probabilities(path: str | Path) -> pd.DataFrame:
    """A probabilities file (test, validation or out-of-fold); names the file when it is not one."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a probabilities CSV ({error})") from None
    missing = [column for column in PROBABILITY_COLUMNS if column not in frame.columns]
    if missing:
        raise UserError(f"{path} line 1: missing column(s) {', '.join(missing[:3])} (expected p0..p17)")
    values = frame[PROBABILITY_COLUMNS].apply(pd.to_numeric, errors="coerce")
    broken = values.isna().to_numpy()
    if broken.any():
        row, column = (int(index) for index in np.argwhere(broken)[0])
        text = frame.iat[row, frame.columns.get_loc(PROBABILITY_COLUMNS[column])]
        name = PROBABILITY_COLUMNS[column]
        raise UserError(f"{path} line {row + 2}: {name} is {text!r}, not a probability (a cut or damaged file?)")
    frame[PROBABILITY_COLUMNS] = values
    return frame


def read_out_of_fold(source: str | Path, needs: set[str], purpose: str) -> tuple[pd.DataFrame, Path]:
    """A cv group's ``oof_probabilities.csv`` (or such a CSV itself), checked for ``needs``."""
    source = Path(source)
    path = source / names.OOF_PROBABILITIES if source.is_dir() else source
    if not path.exists():
        raise UserError(f"{path}: not found ({purpose} needs out-of-fold probabilities: a finished maskcls cv)")
    table = read_probabilities(path)
    missing = needs - set(table.columns)
    if missing:
        raise UserError(f"{path} line 1: missing column(s) {', '.join(sorted(missing))}")
    return table, path
