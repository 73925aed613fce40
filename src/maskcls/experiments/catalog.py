"""The runs table: every training run and cv group under a folder, side by side.

One row per run or cv group (a group's fold runs make up its row): name, date, git commit,
folds, the config keys whose values differ among the listed rows (and only those), best valid
macro F1 and its epoch, CV F1, leaderboard F1 of the newest scored submission, wall time.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from maskcls.choices import TABLE_FORMATS
from maskcls.config import MACHINE_KEYS, flatten, parse_override, suggestion
from maskcls.errors import UserError
from maskcls.files import atomic_path, read_json, write_text_atomic
from maskcls.results import selection_f1
from maskcls.rundir import names
from maskcls.rundir.folders import read_rows

log = logging.getLogger("maskcls")

# stored beside the config but not part of the experiment's recipe
NOT_RECIPE = {"name", "mean", "std", "git_commit", "python", "torch", "timm", "train.fold", *MACHINE_KEYS}
METRIC_COLUMNS = [
    "valid_f1", "epoch", "cv_f1", "age_f1", "age_mae", "scored_cv_f1", "public_f1", "private_f1", "minutes",
]  # fmt: skip
"""``age_f1`` / ``age_mae``: the age head's F1 and the age estimate's mean absolute error (years), at
the best epoch of a run or out of fold for a cv group; ``age_mae`` only for heads that estimate it.
``scored_cv_f1``: the CV F1 ``maskcls score`` put beside the newest scored submission (the out-of-fold
F1 of the calibration that decided it, where one did), next to its public and private F1."""


@dataclass
class Entry:
    name: str  # folder relative to the listed root
    folder: Path
    kind: str  # "run" or "cv"
    date: datetime
    commit: str | None  # first 8 characters; None outside a git checkout
    folds: str  # "2/5" for one fold of five, "5" for a cv group, "holdout"
    status: str
    config: dict[str, Any] = field(default_factory=dict)  # flattened recipe
    valid_f1: float | None = None
    epoch: str = ""
    cv_f1: float | None = None
    scored_cv_f1: float | None = None  # score's CV F1 beside the scored submission (its calibration's, if any)
    public_f1: float | None = None
    private_f1: float | None = None
    age_f1: float | None = None
    age_mae: float | None = None
    scored: str | None = None  # the submission whose leaderboard F1 is shown
    minutes: float | None = None
    who: str | None = None  # user@host, for the rows of a tracking server (runs --from)

    def value(self, column: str) -> Any:
        if column in self.config:
            return self.config[column]
        if column == "f1":  # the honest comparable figure: CV F1 where there is one
            return self.cv_f1 if self.cv_f1 is not None else self.valid_f1
        if column == "date":
            return self.date.strftime("%Y-%m-%d %H:%M")
        return getattr(self, column, None)


def find_entries(root: str | Path) -> list[Entry]:
    """Every run folder (``config.json``) and cv group (``group.json``) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of runs")
    entries = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        if names.GROUP in files:
            entries.append(read_group(here, root))
        elif names.CONFIG in files:
            entries.append(read_run(here, root))
        else:
            subfolders.sort()
            continue
        subfolders.clear()  # a group's folds belong to its row
    return sorted(entries, key=lambda entry: entry.date)


def recipe(config: dict) -> dict[str, Any]:
    return {key: value for key, value in flatten(config).items() if key not in NOT_RECIPE}


def read_run(folder: Path, root: Path) -> Entry:
    config = read_json(folder / names.CONFIG)
    result = read_json(folder / names.RESULT, missing={})
    rows = read_rows(folder / names.SUMMARY)
    train = config.get("train", {})
    entry = Entry(
        name=relative_name(folder, root),
        folder=folder,
        kind="run",
        date=modified(folder / names.CONFIG),
        commit=(config.get("git_commit") or "")[:8] or None,
        folds="holdout" if train.get("holdout") else f"{train.get('fold', 0)}/{train.get('folds', '?')}",
        status=run_status(folder, result, len(rows)),
        config=recipe(config),
    )
    if rows:
        best = max(rows, key=selection_f1)  # the epoch best.pt holds
        entry.valid_f1, entry.epoch = float(best["valid_f1"]), best["epoch"]
        entry.age_f1, entry.age_mae = (
            optional_float(best.get("valid_f1_age")),
            optional_float(best.get("valid_age_mae")),
        )
        entry.minutes = round(result.get("seconds", sum(float(row["seconds"]) for row in rows)) / 60, 2)
    add_scores(entry)
    return entry


def run_status(folder: Path, result: dict, epochs: int) -> str:
    if result.get("finished"):
        return "finished"
    trial = read_json(folder / names.TRIAL, missing={})  # a trial of maskcls tune says why it stopped
    if trial.get("state") in ("pruned", "failed"):
        return f"{trial['state']} after {epochs} epochs"
    return f"stopped after {epochs} epochs"


def read_group(folder: Path, root: Path) -> Entry:
    group = read_json(folder / names.GROUP)
    cv = read_json(folder / names.CV_RESULT, missing={})
    folds = [read_run(folder / run, root) for run in group.get("runs", []) if (folder / run / names.CONFIG).exists()]
    finished = [fold for fold in folds if fold.status == "finished"]
    complete = bool(cv) and len(finished) == group.get("folds")
    entry = Entry(
        name=relative_name(folder, root),
        folder=folder,
        kind="cv",
        date=modified(folder / names.GROUP),
        commit=folds[0].commit if folds else None,
        folds=str(group.get("folds", "?")),
        status="finished" if complete else f"{len(finished)}/{group.get('folds')} folds",
        config=recipe(group.get("config", {})),
        cv_f1=cv.get("oof_f1"),
        age_f1=cv.get("oof_f1_age"),
        age_mae=cv.get("oof_age_mae"),
    )
    scored = [fold.valid_f1 for fold in folds if fold.valid_f1 is not None]
    if scored:
        entry.valid_f1 = cv.get("fold_f1_mean", sum(scored) / len(scored))
        entry.epoch = ",".join(fold.epoch for fold in folds)
        entry.minutes = round(sum(fold.minutes or 0 for fold in folds), 2)
    add_scores(entry)
    return entry


def optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def add_scores(entry: Entry) -> None:
    """Public/private F1 of the newest ``*.score.json`` written by ``maskcls score`` here, and the
    CV F1 score put beside it (the out-of-fold F1 of the calibration that decided it, if one did)."""
    scores = sorted(entry.folder.glob("*.score.json"), key=lambda path: path.stat().st_mtime)
    if not scores:
        return
    newest = read_json(scores[-1])
    entry.scored_cv_f1 = newest.get("validation_f1")
    entry.public_f1 = newest.get("public", {}).get("f1")
    entry.private_f1 = newest.get("private", {}).get("f1")
    entry.scored = scores[-1].name.removesuffix(".score.json") + ".csv"


def relative_name(folder: Path, root: Path) -> str:
    return folder.relative_to(root).as_posix() if folder != root else folder.name


def modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime)


# --- choosing and comparing -------------------------------------------------------------------


def differing_keys(entries: list[Entry]) -> list[str]:
    """Config keys whose value is not the same in every entry (a missing key counts as a value)."""
    keys: dict[str, None] = {}
    for entry in entries:
        keys.update(dict.fromkeys(entry.config))
    return [key for key in keys if len({json.dumps(entry.config.get(key)) for entry in entries}) > 1]


def filter_entries(entries: list[Entry], conditions: list[str]) -> list[Entry]:
    """Keep entries matching every ``key=value`` (config key or column; ``*`` globs in text)."""
    for condition in conditions:
        if "=" not in condition or not condition.partition("=")[0].strip():
            raise UserError(f"where {condition!r}: expected KEY=VALUE, e.g. optim.name=adamw")
        key, wanted = parse_override(condition)
        columns = ("name", "who", "kind", "status", "commit", "folds")
        known = {*(key for entry in entries for key in entry.config), *columns}
        if entries and key not in known:
            raise UserError(f"where {condition}: unknown key {key!r}{suggestion(key, sorted(known))}")
        raw = condition.partition("=")[2].strip()
        entries = [entry for entry in entries if matches(entry.value(key), wanted, raw)]
    return entries


def matches(actual: Any, wanted: Any, raw: str) -> bool:
    """Equal as parsed YAML, as numbers (``1e-3`` is 0.001), or as text with ``*`` globs."""
    if actual == wanted:
        return True
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        try:
            return float(raw) == float(actual)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(str(actual), raw)


def sort_entries(entries: list[Entry], column: str, columns: list[str]) -> list[Entry]:
    """Scores (any column with f1) best first; others A-Z; entries without a value go last.
    ``f1`` compares like with like: cross-validated entries by CV F1 first, then single runs by
    the valid F1 of their one fold (a fold's F1 is no match for an out-of-fold one)."""
    if column not in columns and column != "f1":
        raise UserError(f"sort {column}: unknown column{suggestion(column, columns)}")
    if column == "f1":
        groups = sort_entries([entry for entry in entries if entry.cv_f1 is not None], "cv_f1", ["cv_f1"])
        singles = sort_entries([entry for entry in entries if entry.cv_f1 is None], "valid_f1", ["valid_f1"])
        return groups + singles
    descending = "f1" in column
    present = [entry for entry in entries if entry.value(column) is not None]
    missing = [entry for entry in entries if entry.value(column) is None]
    present.sort(key=lambda entry: sortable(entry.value(column)), reverse=descending)
    return present + missing


def best_entries(entries: list[Entry]) -> dict[str, str]:
    """Entry name -> its marker: the best cross-validated entry (by CV F1) and the best single
    run (by its fold's valid F1), each among its own kind."""
    marks = {}
    for what, attribute in (("best CV", "cv_f1"), ("best run", "valid_f1")):
        kind = [entry for entry in entries if (entry.cv_f1 is not None) == (attribute == "cv_f1")]
        scored = [entry for entry in kind if getattr(entry, attribute) is not None]
        if scored:
            marks[max(scored, key=lambda entry: getattr(entry, attribute)).name] = what
    return marks


def sortable(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


def tabulate(found: list[Entry], sort: str = "date", where: list[str] | None = None):
    """The runs table of ``found``: (entries kept by ``where``, sorted by ``sort``; their columns;
    one row per entry)."""
    entries = filter_entries(found, where or [])
    columns = table_columns(entries)
    entries = sort_entries(entries, sort, columns)
    return entries, columns, table_rows(entries, columns)


def table_columns(entries: list[Entry]) -> list[str]:
    who = ["who"] if any(entry.who for entry in entries) else []
    fixed = ["name", *who, "kind", "date", "commit", "folds", "status"]
    return [*fixed, *differing_keys(entries), *METRIC_COLUMNS, "scored"]


def table_rows(entries: list[Entry], columns: list[str]) -> list[dict[str, Any]]:
    return [{column: entry.value(column) for column in columns} for entry in entries]


def cell_text(column: str, value: Any) -> str:
    """How a cell reads in the text formats: 4 decimals for scores, 1 for minutes."""
    if value is None:
        return ""
    if isinstance(value, float) and "f1" in column:
        return f"{value:.4f}"
    if isinstance(value, float) and column == "minutes":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --- output formats ---------------------------------------------------------------------------


def write_table(rows: list[dict[str, Any]], columns: list[str], form: str, path: Path | None) -> str | None:
    """``csv`` or ``md`` as text (returned, or written to ``path``); ``xlsx`` needs ``path``."""
    if form == "xlsx":
        if path is None:
            raise UserError("format xlsx needs a file to write (--out FILE.xlsx)")
        write_xlsx(rows, columns, path)
        return None
    if form not in ("csv", "md"):
        raise UserError(f"format {form}: expected {', '.join(TABLE_FORMATS)}")
    text = csv_text(rows, columns) if form == "csv" else markdown_text(rows, columns)
    if path is None:
        return text
    write_text_atomic(path, text)
    return None


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[column] is None else row[column] for column in columns])
    return buffer.getvalue()


def markdown_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [cell_text(column, row[column]).replace("|", "\\|") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_xlsx(rows: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    """A real Excel workbook: typed cells, bold frozen header, filters, readable widths."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "runs"
    sheet.append(columns)
    for row in rows:
        sheet.append([excel_value(row[column]) for column in columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "B2"
    sheet.auto_filter.ref = sheet.dimensions
    for index, column in enumerate(columns, start=1):
        width = max([len(column), *(len(cell_text(column, row[column])) for row in rows)])
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = min(width + 2, 60)
        if "f1" in column:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = "0.0000"
    with atomic_path(path) as temporary:
        book.save(temporary)


def excel_value(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


# --- TensorBoard ------------------------------------------------------------------------------

HPARAM_METRICS = ["valid_f1", "cv_f1", "public_f1", "private_f1"]


def refresh_runs_table(runs_dir: str | Path) -> None:
    """After a training run: TensorBoard's HPARAMS tab (``runs_dir/hparams``) includes it; a
    failure here is a warning, never a failed run."""
    try:
        refresh_hparams(runs_dir)
    except (OSError, UserError, ValueError) as error:
        log.warning(f"{runs_dir}/hparams not refreshed: {error}")


def refresh_hparams(root: str | Path, entries: list[Entry] | None = None) -> Path:
    """Rewrite ``root/hparams/`` from every run and group under ``root`` (the unfiltered table;
    ``entries`` when they were already read)."""
    entries = find_entries(root) if entries is None else entries
    return write_hparams(Path(root), entries, differing_keys(entries))


def write_hparams(root: Path, entries: list[Entry], keys: list[str]) -> Path:
    """``root/hparams/NAME/``: one TensorBoard session per entry with the differing keys and the
    scores, rewritten on every call (under a lock: parallel folds finish together), so that
    ``tensorboard --logdir runs`` shows the runs table in its HPARAMS tab."""
    import fcntl

    base = root / "hparams"
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in entries:
            write_session(base / entry.name, entry, keys)
        current = {base / entry.name for entry in entries}
        for stale in {path.parent for path in base.rglob("events.out.tfevents.*")} - current:
            shutil.rmtree(stale, ignore_errors=True)  # a run that was deleted or renamed
    return base


def write_session(folder: Path, entry: Entry, keys: list[str]) -> None:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    folder.mkdir(parents=True, exist_ok=True)
    old = list(folder.glob("events.out.tfevents.*"))
    values = {key: hparam_value(entry.config.get(key)) for key in keys}
    values["kind"] = entry.kind
    experiment, start, end = hparams(values, {f"hparam/{name}": 0.0 for name in HPARAM_METRICS})
    with SummaryWriter(str(folder)) as writer:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        for name in HPARAM_METRICS:
            if getattr(entry, name) is not None:
                writer.add_scalar(f"hparam/{name}", getattr(entry, name))
    for path in old:
        path.unlink(missing_ok=True)


def hparam_value(value: Any) -> Any:
    return "" if value is None else value if isinstance(value, bool | int | float | str) else str(value)
