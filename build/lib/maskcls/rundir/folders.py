"""Run folders: one per training run, with everything needed to compare and reproduce it."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maskcls.errors import UserError
from maskcls.files import read_json, write_csv_atomic, write_json_atomic
from maskcls.rundir import names


def new_run_folder(runs_dir: str | Path, name: str) -> Path:
    """``runs/NAME``, or ``runs/NAME-2``, ``-3``... when taken."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ["", *(f"-{k}" for k in range(2, 10_000))]:
        candidate = runs_dir / f"{name}{suffix}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run name for {name!r} in {runs_dir}")


CONTAINER_PLANS = (names.GROUP, names.SWEEP, names.TUNE)


def runs_root(run: Path) -> Path:
    """The runs folder a run belongs to (where ``folds/`` and ``cache/`` are): the first folder
    above it that is not a container of runs. A fold sits in a cv group, which may sit in a
    sweep or a study (``runs/NAME-tune/trial-0007/fold0``), so the walk goes up past every
    folder that holds a group's, a sweep's or a study's plan."""
    folder = Path(run).absolute().parent
    while folder.parent != folder and any((folder / plan).exists() for plan in CONTAINER_PLANS):
        folder = folder.parent
    return folder


def environment() -> dict[str, Any]:
    """Git commit and library versions, stored beside the resolved config."""
    import timm
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "git_commit": commit or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """The whole CSV, rewritten atomically (summary.csv stays valid if the run is killed)."""
    if not rows:
        return
    write_csv_atomic(path, list(rows[0]), rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def keep_plan(path: Path, plan: dict, what: str, remedy: str, growable: dict[str, Callable] | None = None) -> dict:
    """Write ``plan`` (JSON) to ``path``, or check it against the one there, so that the work it
    describes resumes. Fields in ``growable`` may change: ``growable[field](stored, given)``
    returns the grown value (more trials, more values) or None when they cannot be joined. Any
    other difference is a UserError that names it and ends with ``remedy``. Returns the plan kept."""
    given = json.loads(json.dumps(plan))  # as stored: tuples become lists
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, given)
        return given
    stored = read_json(path)
    kept, differences = dict(stored), []
    for field in sorted(set(stored) | set(given)):
        before, after = stored.get(field), given.get(field)
        if before == after:
            continue
        grown = growable[field](before, after) if field in (growable or {}) else None
        if grown is None:
            differences.append(describe_difference(field, before, after))
        else:
            kept[field] = grown
    if differences:
        raise UserError(f"{path.parent}: holds {what} with another {'; '.join(differences)}; {remedy}")
    if kept != stored:
        write_json_atomic(path, kept)
    return kept


def describe_difference(field: str, stored: Any, given: Any) -> str:
    """``base config: optim.lr 0.001 there, 0.003 here`` (up to three keys of a nested config)."""
    if isinstance(stored, dict) and isinstance(given, dict):
        there, here = flat_items(stored), flat_items(given)
        keys = sorted(key for key in set(there) | set(here) if there.get(key) != here.get(key))
        shown = ", ".join(f"{key} {there.get(key)!r} there, {here.get(key)!r} here" for key in keys[:3])
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        return f"{field} ({shown}{more})"
    return f"{field} ({stored!r} there, {given!r} here)"


def flat_items(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flat_items(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
