"""What continuing a stopped run may change, and how its schedule catches up."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from maskcls.config import MACHINE_KEYS, Config, set_dotted
from maskcls.errors import UserError
from maskcls.rundir import names
from maskcls.rundir.folders import read_rows

RESUMABLE_KEYS = ("train.early_stopping", "train.epochs")  # and the machine settings, MACHINE_KEYS


def resume_config(checkpoint: dict, changes: dict[str, Any]) -> Config:
    """The stopped run's config with the changes a resume can make (``RESUMABLE_KEYS``: more
    epochs, another patience; and any machine setting); any other change would not continue the
    same run."""
    refused = sorted(set(changes) - {*RESUMABLE_KEYS, *MACHINE_KEYS})
    if refused:
        raise UserError(
            f"a resume cannot change {', '.join(refused)}: that would not continue the same run (only "
            f"{', '.join(RESUMABLE_KEYS)} and the machine settings {', '.join(MACHINE_KEYS)} can change); "
            "start a new run instead"
        )
    plain = copy.deepcopy(checkpoint["config"])  # the checkpoint keeps the config it was written with
    for key, value in changes.items():
        plain = set_dotted(plain, key, value)
    config = Config.model_validate(plain)
    if config.train.epochs <= checkpoint["epoch"] and "train.epochs" in changes:
        done = checkpoint["epoch"]
        raise UserError(f"resume: train.epochs={config.train.epochs}, but the run already trained {done} epochs")
    return config


def rows_before(run: Path, epoch: int) -> list[dict]:
    """The summary rows of the epochs a checkpoint holds (a later row was written by an epoch
    whose checkpoint did not land)."""
    rows = read_rows(run / names.SUMMARY)
    return [{key: float(value) if key != "epoch" else int(value) for key, value in row.items()} for row in rows][:epoch]


def fast_forward(scheduler, steps: int) -> None:
    """Step a fresh scheduler as far as a run got (its learning rate only; no weights move)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(steps):
            scheduler.step()


def interrupted_message(run: Path, epochs_done: int, epochs: int) -> str:
    if epochs_done == 0:
        return f"interrupted before the first epoch ended; nothing to resume, {run} can be deleted"
    return f"interrupted after epoch {epochs_done} of {epochs}; continue with: maskcls train --resume {run}"
