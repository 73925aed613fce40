"""``maskcls distill``: a cv group's ensemble taught into one model.

The teacher's soft labels are the group's probabilities: out-of-fold for the training photos
(each from the fold model that never saw that person) and the ensemble's for the test photos
(``maskcls predict GROUP`` writes them). They go to ``GROUP/teacher-HASH.csv``; the student, the
group's recipe (or the recipe with overrides, e.g. a smaller backbone), trains once as
``NAME-student`` on the group's fold 0 split with ``data.teacher`` naming that file: its training
photos learn the teacher's probabilities besides their labels, and the test photos join them with
the teacher's most likely class. Its validation photos are the real labels of fold 0's people,
but the soft labels of its training photos come partly from the other folds' models, which saw
those people: its validation F1 leans optimistic; the test set says how good it is."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from maskcls.callbacks import Progress
from maskcls.config import Config, changed_config
from maskcls.errors import UserError
from maskcls.experiments.pseudo import probability_rows
from maskcls.files import read_json, write_text_atomic
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.results import FitResult
from maskcls.rundir import names
from maskcls.rundir.tables import read_probabilities

TEACHER = "teacher"
"""``GROUP/teacher-HASH.csv``: the hash of the soft labels in the name, as for pseudo-labels."""


def teacher_table(group: Path) -> pd.DataFrame:
    """path and p0..p17: the group's out-of-fold probabilities, then its test probabilities."""
    oof, test = group / names.OOF_PROBABILITIES, group / names.TEST_PROBABILITIES
    if not oof.exists():
        raise UserError(f"{oof}: not found (the group's cv has not finished)")
    if not test.exists():
        raise UserError(f"{test}: not found; run `maskcls predict {group} --data DATA` first")
    training = pd.read_csv(oof)[["path", *PROBABILITY_COLUMNS]]
    training[PROBABILITY_COLUMNS] = training[PROBABILITY_COLUMNS].round(6)
    return pd.concat([training, probability_rows(read_probabilities(test))], ignore_index=True)


def student_config(group: Path, teacher: Path, *, weight: float, data, overrides: list[str]) -> Config:
    """The group's recipe with ``overrides`` (``a.b=value``), as ``NAME-student``: fold 0 of the
    group's folds, learning from ``teacher`` (which labels the test photos pseudo-labels would)."""
    plain = read_json(group / names.GROUP)["config"]
    fixed = {"name": f"{plain['name']}-student", "data.teacher": str(teacher.absolute()), "data.pseudo": None}
    fixed.update({"train.fold": 0, "train.distill": weight})  # the teacher labels every test photo: no pseudo
    if data is not None:
        fixed["data.root"] = str(data)
    return changed_config(plain, fixed, overrides)


def distill(
    group: str | Path,
    *,
    weight: float = 0.5,
    data: str | Path | None = None,
    overrides: list[str] = (),
    runs_dir: str | Path = "runs",
    progress: Progress | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Path, int, FitResult]:
    """Write ``GROUP/teacher-HASH.csv`` and train the student; returns the file, the number of photos
    it labels and the student's result."""
    from maskcls.training.train import fit

    group = Path(group)
    if names.kind(group) is not names.Kind.GROUP:
        raise UserError(f"{group}: not a cv group (maskcls distill teaches a group's ensemble into one model)")
    if not 0 < weight <= 1:
        raise UserError(f"weight must be in (0, 1], got {weight}")
    table = teacher_table(group)
    text = table.to_csv(index=False)
    path = group / f"{TEACHER}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.csv"
    write_text_atomic(path, text)
    config = student_config(group, path, weight=weight, data=data, overrides=list(overrides))
    return path, len(table), fit(config, runs_dir=runs_dir, progress=progress, on_epoch=on_epoch)
