"""Label corrections: per-profile fixes from a YAML file, applied to the image table.

Images are never edited. A fix names one profile folder (``profile``) or every folder of an id
(``id``), and changes ``gender``, ``age`` and/or swaps the ``incorrect_mask``/``normal`` labels::

    verified: false
    fixes:
      - id: "001498-1"
        gender: female
        note: community report
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from maskcls.config import format_validation_error, read_yaml_mapping
from maskcls.data.problems import Problem
from maskcls.errors import ConfigError
from maskcls.labels import Mask, parse_gender


class LabelFix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str | None = None
    id: str | None = None
    gender: str | None = None
    age: int | None = None
    swap_incorrect_normal: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _one_target_and_a_change(self) -> LabelFix:
        if (self.profile is None) == (self.id is None):
            raise ValueError("give exactly one of 'profile' (folder name) or 'id'")
        if self.gender is None and self.age is None and not self.swap_incorrect_normal:
            raise ValueError("a fix must change gender, age or set swap_incorrect_normal: true")
        if self.gender is not None:
            parse_gender(self.gender)
        return self

    @property
    def target(self) -> str:
        return f"profile {self.profile!r}" if self.profile else f"id {self.id!r}"

    def describe(self) -> str:
        return f"{self.target}: {self.changes()}"

    def changes(self) -> str:
        changes = []
        if self.gender is not None:
            changes.append(f"gender -> {self.gender}")
        if self.age is not None:
            changes.append(f"age -> {self.age}")
        if self.swap_incorrect_normal:
            changes.append("swap incorrect_mask/normal")
        return ", ".join(changes)


class Corrections(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    verified: bool = False
    fixes: list[LabelFix] = []
    source: str = ""


def load_corrections(path: str | Path) -> Corrections:
    from maskcls.recipebook import resolve_recipe

    path = resolve_recipe(path, "corrections")  # the shipped community list works by name
    try:
        corrections = Corrections.model_validate(read_yaml_mapping(path, "corrections"))
    except ValidationError as error:
        raise ConfigError(*format_validation_error(error, str(path))) from None
    corrections.source = str(path)
    return corrections


def apply_corrections(
    table: pd.DataFrame, corrections: Corrections, problems: list[Problem]
) -> tuple[pd.DataFrame, list[str]]:
    """Return the corrected table and one line per applied fix; unmatched fixes are problems."""
    table = table.copy()
    applied = []
    for number, fix in enumerate(corrections.fixes, 1):
        rows = matching_rows(table, fix)
        profiles = sorted(table.loc[rows, "profile"].unique())
        where = corrections.source
        if not profiles:
            problems.append(Problem("unmatched_fix", where, f"fix {number}: {fix.target} matches no profile"))
            continue
        if fix.id is not None and len(profiles) > 1:
            problems.append(
                Problem(
                    "ambiguous_fix",
                    where,
                    f"fix {number}: id {fix.id!r} matches {len(profiles)} profiles "
                    f"({', '.join(profiles)}); name one with 'profile'",
                )
            )
            continue
        apply_fix(table, rows, fix)
        applied.append(f"{profiles[0]}: {fix.changes()}")
    return table, applied


def matching_rows(table: pd.DataFrame, fix: LabelFix) -> pd.Series:
    if fix.profile is not None:
        return table["profile"] == fix.profile
    return table["person_id"] == fix.id


def apply_fix(table: pd.DataFrame, rows: pd.Series, fix: LabelFix) -> None:
    if fix.gender is not None:
        table.loc[rows, "gender"] = int(parse_gender(fix.gender))
    if fix.age is not None:
        table.loc[rows, "age"] = fix.age
    if fix.swap_incorrect_normal:
        incorrect = rows & (table["stem"] == "incorrect_mask")
        normal = rows & (table["stem"] == "normal")
        table.loc[incorrect, "mask"] = int(Mask.NOT_WEAR)
        table.loc[normal, "mask"] = int(Mask.INCORRECT)
