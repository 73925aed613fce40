"""Person-level splits: no person is ever on both sides, strata (gender x age group) balanced.

The split is made over the people table (one row per profile folder), so it is person-level by
construction; each image then follows its person. ``folds.csv`` (profile, fold) is written once
and reused, so that every experiment is validated on the same people.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from maskcls.errors import UserError
from maskcls.files import atomic_path
from maskcls.labels import AGE_BORDERS, age_groups

log = logging.getLogger("maskcls")
TRAIN_ONLY = -1
"""Fold of a person who is never validated on (the training side of a holdout split)."""


def strata(people: pd.DataFrame, age_borders: tuple[int, int] = AGE_BORDERS) -> np.ndarray:
    """gender * 3 + age group, one per person: the retrospective's stratification."""
    return people["gender"].to_numpy() * 3 + age_groups(people["age"].to_numpy(), age_borders)


def make_folds(people: pd.DataFrame, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """``profile, fold`` with fold in 0..folds-1, stratified over gender x age group."""
    if folds < 2:
        raise UserError(f"folds must be at least 2, got {folds}")
    if len(people) < folds:
        raise UserError(f"cannot make {folds} folds from {len(people)} people")
    labels = strata(people)
    if np.bincount(labels).max() < folds:  # every stratum smaller than the folds: StratifiedKFold refuses
        log.warning(f"no gender x age group has {folds} people: the {folds} folds are drawn without stratifying")
        labels = np.zeros(len(people), dtype=int)
    assignment = np.empty(len(people), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, valid) in enumerate(splitter.split(np.zeros(len(people)), labels)):
            assignment[valid] = fold
    return pd.DataFrame({"profile": people["profile"].to_numpy(), "fold": assignment})


def make_holdout(people: pd.DataFrame, valid_ratio: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """``profile, fold``: fold 0 for the validation people, TRAIN_ONLY for the others."""
    if not 0 < valid_ratio < 1:
        raise UserError(f"valid ratio must be between 0 and 1, got {valid_ratio}")
    labels = strata(people)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=valid_ratio, random_state=seed)
    try:
        _, valid = next(splitter.split(np.zeros(len(people)), labels))
    except ValueError:  # a stratum with a single person: fall back to an unstratified draw
        valid = np.random.default_rng(seed).permutation(len(people))[: max(1, round(valid_ratio * len(people)))]
    assignment = np.full(len(people), TRAIN_ONLY)
    assignment[valid] = 0
    return pd.DataFrame({"profile": people["profile"].to_numpy(), "fold": assignment})


def load_or_make_folds(path: str | Path, people: pd.DataFrame, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Reuse ``path`` when it exists (checking it fits these people), else make and write it."""
    path = Path(path)
    if path.exists():
        table = read_folds(path)
        check_folds(table, people, folds, path)
        return table
    table = make_folds(people, folds, seed)
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False, quoting=csv.QUOTE_MINIMAL)
    return table


def read_folds(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"profile": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"{path}: not a folds file ({error})") from None
    if list(table.columns) != ["profile", "fold"]:
        raise UserError(f"{path} line 1: expected header profile,fold")
    return table


def check_folds(table: pd.DataFrame, people: pd.DataFrame, folds: int, path: Path) -> None:
    missing = sorted(set(people["profile"]) - set(table["profile"]))
    if missing:
        raise UserError(f"{path}: {len(missing)} people have no fold (e.g. {missing[0]}); delete it to re-split")
    found = sorted(set(table["fold"]) - {TRAIN_ONLY})
    if found != list(range(folds)):
        raise UserError(f"{path}: holds folds {found}, not 0..{folds - 1}; delete it or use {len(found)} folds")


def split_rows(images: pd.DataFrame, folds: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of ``images`` (one row per image, with ``profile``) for training and validation."""
    fold_of = dict(zip(folds["profile"], folds["fold"], strict=True))
    assigned = images["profile"].map(fold_of)
    if assigned.isna().any():
        raise UserError(f"profile {images['profile'][assigned.isna()].iloc[0]!r} has no fold")
    valid = (assigned == fold).to_numpy()
    return np.flatnonzero(~valid), np.flatnonzero(valid)
