"""``maskcls pseudo``: a second round of cross-validation with the confident test photos added.

Each fold model's test predictions (``maskcls predict GROUP`` writes them into the fold folders)
whose 18-class probability reaches the threshold become that fold's rows of
``GROUP/pseudo_labels-HASH.csv`` (hard labels, with a ``fold`` column); the group's recipe is then
cross-validated again as ``NAME-pseudo`` with ``data.pseudo`` naming that file. Fold k of the
second round trains on the labels of fold k's first-round model, which never saw fold k's
validation people: the out-of-fold scores stay honest (the ensemble's labels would carry what
the other folds' models learnt from those people), and they are on real labels only.

``--fine-tune EPOCHS`` continues each first-round fold model on its own fold instead of training
from the recipe's weights again (``NAME-pseudo-ft``): a few epochs at a quarter of the learning
rate, no warm-up; the same honesty, since fold k's model never saw fold k's validation people."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.callbacks import Progress
from maskcls.config import changed_config
from maskcls.data.layout import eval_image_path
from maskcls.data.pseudo import TYPICAL_AGES
from maskcls.data.teacher import AGE_COLUMN
from maskcls.errors import UserError
from maskcls.experiments.cv import cross_validate
from maskcls.files import read_json, write_text_atomic
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS, decode_classes
from maskcls.results import CvResult
from maskcls.rundir import names
from maskcls.rundir.tables import read_probabilities

PSEUDO_SOFT = "pseudo_soft"  # GROUP/pseudo_soft-HASH.csv: each fold model's probabilities (--soft)
PSEUDO_LABELS = "pseudo_labels"
"""``GROUP/pseudo_labels-HASH.csv``: the hash of the labels in the name, so that a second round
trained on other labels (another threshold, a retrained first round) is another recipe: its
group is not mistaken for a finished one (cv refuses the name until it is moved away)."""
FINE_TUNE_LR_SHARE = 0.25  # of the recipe's optim.lr, for --fine-tune


def pseudo_labels(group: Path, threshold: float, soft: bool = False) -> pd.DataFrame:
    """Per fold, the test photos its model predicted with at least ``threshold`` probability,
    labelled (``fold`` says whose): hard labels, or with ``soft`` the model's 18 probabilities."""
    if not 0 < threshold <= 1:
        raise UserError(f"threshold must be in (0, 1], got {threshold}")
    labels = probability_rows if soft else fold_labels
    parts = [labels(table, threshold).assign(fold=fold) for fold, table in enumerate(fold_tables(group))]
    return pd.concat(parts, ignore_index=True)


def fold_tables(group: Path) -> list[pd.DataFrame]:
    """Each fold model's test probabilities, in fold order."""
    return [fold_table(group / run, group) for run in read_json(group / names.GROUP)["runs"]]


def fold_table(run: Path, group: Path) -> pd.DataFrame:
    """A fold model's test probabilities (``maskcls predict GROUP`` writes them)."""
    path = run / names.TEST_PROBABILITIES
    if not path.exists():
        raise UserError(f"{path}: not found; run `maskcls predict {group} --data DATA` first")
    return read_probabilities(path)


def probability_rows(table: pd.DataFrame, threshold: float = 0.0) -> pd.DataFrame:
    """``path`` and p0..p17 (rounded to 6 places) of the test photos a model predicted with at least
    ``threshold`` probability (rows of a teacher file: ``data.teacher``), and ``age``, the model's
    age estimate in years, when its age head gives one."""
    probabilities = table[PROBABILITY_COLUMNS].to_numpy(dtype=float)
    frame = pd.DataFrame(probabilities.round(6), columns=PROBABILITY_COLUMNS)
    frame.insert(0, "path", table["ImageID"].astype(str).map(eval_image_path).to_numpy())
    if AGE_ESTIMATE_COLUMN in table.columns:
        frame[AGE_COLUMN] = np.round(table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float), 1)
    return frame[probabilities.max(axis=1) >= threshold].reset_index(drop=True)


def fold_labels(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The photos one model predicted with at least ``threshold`` probability, labelled."""
    probabilities = table[PROBABILITY_COLUMNS].to_numpy(dtype=float)
    labels, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    mask, gender, age_group = decode_classes(labels)
    if AGE_ESTIMATE_COLUMN in table.columns:
        ages = table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float)
    else:
        ages = np.asarray(TYPICAL_AGES)[age_group]
    return label_rows(table, mask, gender, ages, confidence, threshold)


def label_rows(table: pd.DataFrame, mask, gender, ages, confidence: np.ndarray, threshold: float) -> pd.DataFrame:
    """Rows of a labels file (``data.pseudo``) for the photos of ``table`` whose confidence reaches
    ``threshold``: path, mask, gender, age in years, probability."""
    frame = pd.DataFrame(
        {
            "path": table["ImageID"].astype(str).map(eval_image_path),
            "mask": mask,
            "gender": gender,
            "age": np.round(ages, 1),
            "probability": np.round(confidence, 6),
        }  # fmt: skip
    )
    return frame[confidence >= threshold].reset_index(drop=True)


def second_round(
    group: str | Path,
    *,
    threshold: float = 0.9,
    soft: float | None = None,
    fine_tune: int | None = None,
    data: str | Path | None = None,
    overrides: list[str] = (),
    runs_dir: str | Path = "runs",
    progress: Progress | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Path, int, CvResult]:
    """Write ``GROUP/pseudo_labels-HASH.csv`` and cross-validate the group's recipe with it as
    ``NAME-pseudo``; returns the labels file, its number of pseudo-labels (over all folds) and the
    new group's result. ``soft``: the fold models' probabilities instead, learnt with that share of
    the loss (``data.teacher``, ``train.distill``), as ``NAME-pseudo-soft`` from
    ``GROUP/pseudo_soft-HASH.csv``. ``fine_tune``: that many epochs from each fold's first-round
    model (name ``...-ft``). ``overrides`` (``a.b=value``) change the second round's recipe."""
    group = Path(group)
    if names.kind(group) is not names.Kind.GROUP:
        raise UserError(f"{group}: not a cv group (maskcls pseudo starts from one that predicted the test set)")
    if soft is not None and not 0 < soft <= 1:
        raise UserError(f"soft must be in (0, 1], got {soft}")
    if fine_tune is not None and fine_tune < 1:
        raise UserError(f"fine_tune must be at least 1 epoch, got {fine_tune}")
    labels = pseudo_labels(group, threshold, soft=soft is not None)
    if labels.empty:
        raise UserError(f"{group}: no test photo reaches probability {threshold}; lower the threshold")
    text = labels.to_csv(index=False)
    stem = PSEUDO_LABELS if soft is None else PSEUDO_SOFT
    path = group / f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.csv"  # other labels, other recipe
    write_text_atomic(path, text)
    plain = read_json(group / names.GROUP)["config"]
    fixed, defaults = round_changes(group, plain, path, soft=soft, fine_tune=fine_tune)
    if data is not None:
        fixed["data.root"] = str(data)
    config = changed_config(plain, fixed, list(overrides), defaults=defaults)
    result = cross_validate(config, runs_dir=runs_dir, progress=progress, on_epoch=on_epoch)
    return path, len(labels), result


def round_changes(
    group: Path, plain: dict, labels: Path, *, soft: float | None, fine_tune: int | None
) -> tuple[dict, dict]:
    """How the second round's recipe differs from the first's: what it must change (its labels,
    where each fold starts from with ``fine_tune`` and for how many epochs) and what the user's
    overrides may change (its name, the fine-tuning's learning rate)."""
    labelled = str(labels.absolute())
    if soft is None:
        fixed, name = {"data.pseudo": labelled}, f"{plain['name']}-pseudo"
    else:
        fixed, name = {"data.teacher": labelled, "train.distill": soft}, f"{plain['name']}-pseudo-soft"
    if fine_tune is None:
        return fixed, {"name": name}
    fixed.update(
        {"model.weights": str(group.absolute() / "fold{fold}" / names.BEST_CHECKPOINT), "train.epochs": fine_tune}
    )
    lr = plain["optim"]["lr"] * FINE_TUNE_LR_SHARE  # and no warm-up: the weights start where they are good
    return fixed, {"name": f"{name}-ft", "optim.lr": lr, "optim.warmup_epochs": 0}
