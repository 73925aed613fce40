"""Checkpoints written atomically and loadable with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer, scheduler and scaler states, the epoch, the best score
so far and the config as a plain dict. Random draws are seeded per epoch from (seed, epoch,
rank), so ``--resume`` continues exactly where a run stopped without storing random states.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from maskcls.errors import UserError, WriteFailed
from maskcls.files import atomic_path, read_json
from maskcls.rundir import names


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written to a temporary file and renamed: on a full disk the previous checkpoint stays."""
    try:
        with atomic_path(path) as temporary:
            torch.save(state, temporary)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as a RuntimeError
        raise WriteFailed(f"{path}: could not be written ({error}); the previous {path.name} is intact") from None


def copy_checkpoint(source: Path, target: Path) -> None:
    """``target`` becomes ``source`` (atomically): an improved epoch's ``best.pt`` is its
    ``last.pt``, written once. It is a hard link where the filesystem has them, so the two take
    the disk of one until the next epoch's ``last.pt`` replaces its own name (a new file, by
    rename), and a copy elsewhere."""
    try:
        with atomic_path(target) as temporary:
            temporary.unlink(missing_ok=True)
            try:
                os.link(source, temporary)
            except OSError:  # no hard links here (some network and FAT filesystems)
                shutil.copyfile(source, temporary)
    except OSError as error:
        raise WriteFailed(f"{target}: could not be written ({error}); the previous {target.name} is intact") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        if names.kind(path.parent) is names.Kind.GROUP:  # export or --resume given a cv group
            raise UserError(group_not_run(path.parent))
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign file
        raise UserError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from None


def group_not_run(group: Path) -> str:
    """A cv group where one run is needed: name its fold runs."""
    runs = read_json(group / names.GROUP, missing={}).get("runs", [])
    folds = ", ".join(str(group / run) for run in runs) or f"the fold folders in {group}"
    return f"{group} is a cv group, not a run: name one of its fold runs ({folds})"
