"""What a folder tells a tracking server, read from the folder alone: its kind and parent, its
name, parameters, tags, per-epoch metrics, closing figures and files. No MLflow here: these are
plain dicts, so that the same folder gives the same record on any machine, now or later."""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from maskcls.config import MACHINE_KEYS, flatten
from maskcls.experiments.catalog import METRIC_COLUMNS, Entry, read_group, read_run, recipe
from maskcls.files import read_json
from maskcls.labels import IMAGE_EXTENSIONS
from maskcls.rundir import names
from maskcls.rundir.folders import read_rows

KINDS = {names.Kind.RUN: "run", names.Kind.GROUP: "cv", names.Kind.SWEEP: "sweep", names.Kind.STUDY: "study"}
"""Each kind of folder (:func:`maskcls.rundir.names.kind`) by the name its tag and the runs table
give it."""
PARENT_KINDS = ("cv", "sweep", "study")
TAG = "maskcls."
"""Prefix of the tags maskcls sets (``maskcls.kind``, ``maskcls.fold``, ...)."""
ARTIFACTS = {
    "run": (
        names.CONFIG, names.SUMMARY, names.RESULT, names.CONFUSION_FIGURE, names.VALID_GRID_FIGURE, names.REPORT,
        names.SUBMISSION, names.TEST_PROBABILITIES, names.CALIBRATION, names.ONNX_MODEL, "model-calibrated.onnx",
    ),
    "cv": (
        names.GROUP, names.CONFIG_YAML, names.CV_RESULT, names.OOF_PROBABILITIES, names.REPORT, names.SUBMISSION,
        names.TEST_PROBABILITIES, names.CALIBRATION, names.AUDIT,
    ),
    "sweep": (names.SWEEP,),
    "study": (names.TUNE, names.STUDY_RESULT, names.TRIALS_TABLE, names.BEST_CONFIG, names.REPORT),
}  # fmt: skip
"""The files logged as artifacts when present (checkpoints stay in the folder: they are large,
and the ONNX model is what one ships)."""
ENTRY_METRICS = {column: column for column in METRIC_COLUMNS if column != "epoch"} | {"valid_f1": "best_valid_f1"}
"""The runs table's figures (not ``epoch``, a text), logged on a run or group as these metric keys
when it closes (the per-epoch ``valid_f1`` is a history; ``best_valid_f1`` is the table's)."""
ENTRY_TAGS = ("status", "folds", "epoch", "commit", "scored")
"""The runs table's text columns, logged as ``maskcls.<column>`` tags."""


def folder_kind(folder: str | Path) -> str | None:
    """``run``, ``cv``, ``sweep``, ``study``, or None for any other folder."""
    return KINDS.get(names.kind(folder))


def parent_folder(folder: Path) -> Path | None:
    """The cv group, sweep or study a folder belongs to (its own folder's parent), if any."""
    parent = folder.resolve().parent
    return parent if folder_kind(parent) in PARENT_KINDS else None


def display_name(folder: Path) -> str:
    """The folder's name under its outermost tracked parent: ``demo-cv3/fold0``."""
    parent = parent_folder(folder)
    own = folder.resolve().name
    return f"{display_name(parent)}/{own}" if parent is not None else own


def children(folder: Path) -> list[Path]:
    """The tracked folders directly inside a cv group, sweep or study, in name order."""
    if folder_kind(folder) not in PARENT_KINDS:
        return []
    return sorted(path for path in folder.iterdir() if path.is_dir() and folder_kind(path) is not None)


def folder_config(folder: Path) -> dict:
    """The config a folder was made with: a run's config.json, a cv group's, a sweep's or a
    study's base recipe."""
    kind = folder_kind(folder)
    if kind == "run":
        return read_json(folder / names.CONFIG)
    if kind == "cv":
        return read_json(folder / names.GROUP)["config"]
    return read_json(folder / (names.SWEEP if kind == "sweep" else names.TUNE))["base"]


def parameters(folder: Path) -> dict[str, str]:
    """The recipe as MLflow parameters: flattened keys, machine settings left out (they are tags),
    values as text that :func:`parameter_value` reads back."""
    return {key: parameter_text(value) for key, value in recipe(folder_config(folder)).items()}


def parameter_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parameter_value(text: str) -> Any:
    """A parameter's value as the runs table has it: numbers, booleans and null back from JSON;
    text (lists and mappings are JSON text there too) as it is."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return text if isinstance(value, list | dict | str) else value


def tags(folder: Path) -> dict[str, str]:
    """Kind, name, fold, group, commit, data fingerprint, where the folder lives, the machine
    settings (device, threads, cache), which are not part of the recipe, and a study's name."""
    kind = folder_kind(folder)
    found = {"kind": kind, "name": display_name(folder), "folder": str(folder.resolve()), "host": socket.gethostname()}
    config = folder_config(folder)
    flat = flatten(config)
    found |= {f"machine.{key}": str(flat[key]) for key in MACHINE_KEYS if flat.get(key) is not None}
    found["data"] = data_fingerprint(config["data"]["root"])
    found["data_root"] = config["data"]["root"]
    found["commit"] = config.get("git_commit")
    if kind == "run":
        found["fold"] = str(config["train"]["fold"])
    if kind == "study":
        found["study_name"] = read_json(folder / names.TUNE)["study"]
    parent = parent_folder(folder)
    if parent is not None:
        found["group" if folder_kind(parent) == "cv" else folder_kind(parent)] = display_name(parent)
    tagged = {f"{TAG}{key}": value for key, value in found.items() if value is not None}
    return {**tagged, "mlflow.user": getpass.getuser(), "mlflow.runName": display_name(folder)}


@functools.cache
def data_fingerprint(root: str) -> str:
    """The dataset's photos (relative path and size), hashed: the same data on another machine
    gives the same text, whatever its dates; ``missing`` when the folder is not here. Once per
    folder and process (a cv group's folds share it; the competition's 31,500 photos take a walk)."""
    root = Path(root)
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha1()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not (folder == str(root) and name == "truth"))
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                path = Path(folder) / name
                digest.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def epoch_metrics(folder: Path) -> list[tuple[int, dict[str, float]]]:
    """(epoch, metrics) of each row of summary.csv: every number but the epoch."""
    rows = read_rows(folder / names.SUMMARY) if folder_kind(folder) == "run" else []
    return [(int(row["epoch"]), numbers(row, skip={"epoch"})) for row in rows]


def closing_record(folder: Path) -> tuple[dict[str, float], dict[str, str]]:
    """The folder's own figures and text when it closes: its row of the runs table (metrics and
    tags), and a cv group's cv.json or a study's study.json."""
    kind = folder_kind(folder)
    metrics: dict[str, float] = {}
    if kind == "cv":
        metrics |= numbers(flatten(read_json(folder / names.CV_RESULT, missing={})))
    elif kind == "study":
        metrics |= numbers(flatten(read_json(folder / names.STUDY_RESULT, missing={})))
    entry = table_entry(folder)
    if entry is None:
        return metrics, {}
    metrics |= numbers({key: getattr(entry, column) for column, key in ENTRY_METRICS.items()})
    if entry.epoch and "," not in entry.epoch:
        metrics["best_epoch"] = float(entry.epoch)
    tags = {f"{TAG}{column}": str(getattr(entry, column)) for column in ENTRY_TAGS if getattr(entry, column)}
    return metrics, tags


def table_entry(folder: Path) -> Entry | None:
    """The folder's row of the runs table (runs and cv groups have one)."""
    kind = folder_kind(folder)
    if kind == "run":
        return read_run(folder, folder.parent)
    if kind == "cv":
        return read_group(folder, folder.parent)
    return None


def artifact_files(folder: Path) -> list[Path]:
    """The files of :data:`ARTIFACTS` present, and the scores of submissions (``*.score.json``)."""
    kind = folder_kind(folder)
    present = [folder / name for name in ARTIFACTS.get(kind, ()) if (folder / name).is_file()]
    return present + sorted(folder.glob("*.score.json"))


def numbers(values: dict[str, Any], skip: set[str] = frozenset()) -> dict[str, float]:
    """The finite numeric values (text that reads as a number too), as floats; booleans left out."""
    found = {}
    for key, value in values.items():
        if key in skip or value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            found[key] = number
    return found
