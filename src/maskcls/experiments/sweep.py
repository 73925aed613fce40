"""Sweeps: the base recipe with one key changed per run, everything else (seed, folds, data) fixed.

runs/NAME-sweep-KEY/  sweep.json           the base config and the varied values (the plan)
                      NAME-KEY_VALUE/      one run folder (or cv group with ``folds``) per value

Changing two keys at once is refused unless ``grid`` is asked for: a comparison is only honest
when one thing changes. Re-running the same sweep skips finished variants and resumes the rest.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from maskcls.callbacks import Progress
from maskcls.config import (
    Config,
    ConfigError,
    check_known_keys,
    format_validation_error,
    recipe_dict,
    set_dotted,
    to_plain_dict,
)
from maskcls.errors import UserError
from maskcls.experiments.catalog import refresh_runs_table
from maskcls.rundir import names
from maskcls.rundir.folders import keep_plan

SWEEP_FILE = names.SWEEP
FIXED_KEYS = {"name", "data.root", "train.fold", "train.folds", "train.holdout"}


@dataclass
class Varied:
    key: str
    values: list[Any]
    texts: list[str]  # as typed, for folder names


@dataclass
class Variant:
    name: str
    changes: dict[str, Any]
    config: Config


def parse_vary(text: str) -> Varied:
    """``optim.lr=1e-3,3e-4`` -> key and YAML-parsed values (commas inside [] stay together)."""
    import yaml

    key, sep, values = text.partition("=")
    texts = split_top_level(values)
    if not sep or not key.strip() or not texts:
        raise UserError(f"vary {text!r}: expected KEY=VALUE1,VALUE2,..., e.g. optim.lr=1e-3,3e-4")
    try:
        parsed = [yaml.safe_load(part) for part in texts]
    except yaml.YAMLError:
        raise UserError(f"vary {text!r}: a value is not valid YAML") from None
    if len(set(texts)) != len(texts):
        raise UserError(f"vary {text!r}: a value is listed twice")
    return Varied(key.strip(), parsed, texts)


def split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def plan_sweep(base: Config, varied: list[Varied], grid: bool = False, folds: int | None = None) -> list[Variant]:
    """Every variant's validated config; refuses two varied keys unless ``grid``."""
    keys = [item.key for item in varied]
    if not varied:
        raise UserError("nothing to vary: give KEY=VALUE1,VALUE2 (--vary)")
    if len(set(keys)) != len(keys):
        raise UserError(f"vary: key {keys[0]!r} given twice (list its values once, comma-separated)")
    if len(varied) > 1 and not grid:
        raise UserError(
            f"vary changes {len(varied)} keys ({', '.join(keys)}): a sweep changes one key at a time so "
            "that the comparison is honest; ask for a grid (--grid) to run every combination"
        )
    for item in varied:
        if item.key in FIXED_KEYS:
            raise UserError(f"vary {item.key}: a sweep keeps {item.key} fixed (runs are compared on the same data)")
        check_known_keys(set_dotted({}, item.key, item.values[0]), Config, f"vary {item.key}")
    variants = []
    for combination in itertools.product(*(range(len(item.values)) for item in varied)):
        chosen = list(zip(varied, combination, strict=True))
        changes = {item.key: item.values[index] for item, index in chosen}
        label = "-".join(f"{leaf(item.key)}_{item.texts[index]}" for item, index in chosen)
        name = safe_name(f"{base.name}-{label}")
        variants.append(Variant(name, changes, variant_config(base, changes, name, folds)))
    return variants


def variant_config(
    base: Config, changes: dict[str, Any], name: str, folds: int | None, origin: str | None = None
) -> Config:
    """``base`` with ``changes`` (dotted keys), named ``name``; an invalid value is named with ``origin``."""
    raw = to_plain_dict(base)
    for key, value in changes.items():
        set_dotted(raw, key, value)
    raw["name"] = name
    if folds is not None:
        raw["train"]["folds"] = folds
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(*format_validation_error(error, origin or f"sweep variant {name}")) from None


def leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "", text.replace(" ", ""))


def sweep_folder(runs_dir: str | Path, base: Config, varied: list[Varied]) -> Path:
    return Path(runs_dir) / f"{base.name}-sweep-{'-'.join(leaf(item.key) for item in varied)}"


def run_sweep(
    base: Config,
    varied: list[Varied],
    *,
    grid: bool = False,
    folds: int | None = None,
    runs_dir: str | Path = "runs",
    progress: Progress | None = None,
    on_variant: Callable[[int, int, Variant, str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Path:
    """Train every variant not yet finished (cv groups when ``folds``); returns the sweep folder.
    ``on_variant(index, count, variant, what)`` around each variant, ``on_epoch(row)`` after each epoch."""
    from maskcls.training.train import check_parts

    variants = plan_sweep(base, varied, grid, folds)
    for variant in variants:  # every variant's names and options, before the first one trains
        check_parts(variant.config)
    folder = sweep_folder(runs_dir, base, varied)
    record_plan(folder, base, varied, grid=grid, folds=folds)
    for index, variant in enumerate(variants):
        if on_variant:
            on_variant(index, len(variants), variant, "starting")
        what = train_variant(variant, folder, runs_dir=runs_dir, folds=folds, progress=progress, on_epoch=on_epoch)
        if on_variant:
            on_variant(index, len(variants), variant, what)
    return folder


def record_plan(folder: Path, base: Config, varied: list[Varied], *, grid: bool, folds: int | None) -> None:
    """Write ``sweep.json``; an existing one must describe the same sweep (then it resumes)."""
    plan = {
        "base": recipe_dict(base),
        "vary": {item.key: item.values for item in varied},
        "grid": grid,
        "folds": folds,
    }
    keep_plan(
        folder / SWEEP_FILE, plan, "a sweep", "to start another sweep, give the base another name (-o name=...)",
        growable={"vary": more_values, "base": same_recipe},
    )  # fmt: skip


def same_recipe(stored: dict, given: dict) -> dict | None:
    """A plan written before machine settings left the recipe still names the same recipe."""
    return given if recipe_dict(stored) == recipe_dict(given) else None


def more_values(stored: dict[str, list], given: dict[str, list]) -> dict[str, list] | None:
    """A sweep grows by values of the same keys: the stored values, then the new ones."""
    if set(stored) != set(given):
        return None
    return {key: stored[key] + [value for value in given[key] if value not in stored[key]] for key in stored}


def train_variant(
    variant: Variant, folder: Path, *, runs_dir: str | Path, folds: int | None, progress, on_epoch=None
) -> str:
    from maskcls.experiments.cv import cross_validate
    from maskcls.training.train import fit

    target = folder / variant.name
    if folds is not None:
        finished = (target / names.CV_RESULT).exists()
        cross_validate(variant.config, runs_dir=runs_dir, progress=progress, group=target, on_epoch=on_epoch)
        return "already finished" if finished else "trained"
    if (target / names.RESULT).exists():
        return "already finished"
    if (target / names.LAST_CHECKPOINT).exists():
        fit(
            variant.config, runs_dir=runs_dir, resume=target, progress=progress, on_finished=refresh_runs_table,
            on_epoch=on_epoch,
        )  # fmt: skip
        return "resumed and finished"
    fit(
        variant.config, runs_dir=runs_dir, progress=progress, run_dir=target, on_finished=refresh_runs_table,
        on_epoch=on_epoch,
    )  # fmt: skip
    return "trained"
