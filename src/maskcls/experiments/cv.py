"""k-fold cross-validation: train every fold of one config, gather out-of-fold probabilities.

runs/NAME-cvK/  group.json              name, folds, seed, fold run folders, resolved config
                config.yaml             the resolved config (what each fold process trains)
                fold0/ .. foldK-1/      ordinary run folders (see train.py)
                oof_probabilities.csv   every training image's probabilities from the fold
                                        that held it out (path, profile, target, fold, p0..p17)
                cv.json                 per-fold valid F1, their mean and spread, OOF F1/accuracy

Every experiment on the same data, fold count and seed uses the same ``runs/folds/`` file, so
their CV scores are comparable. Finished folds (``result.json``) are skipped, half-finished ones
resumed. With several ``devices`` the folds run in parallel, one process per device.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from maskcls.callbacks import Progress
from maskcls.config import Config, recipe_dict, to_plain_dict
from maskcls.data.layout import read_dataset
from maskcls.errors import Interrupted, UserError
from maskcls.evaluation.age_borders import held_out_borders
from maskcls.experiments.catalog import refresh_runs_table
from maskcls.files import read_json, write_json_atomic, write_text_atomic
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS, age_groups
from maskcls.locks import exclusive_use, refuse_if_busy
from maskcls.metrics import macro_f1, summary
from maskcls.results import CvResult, FitResult
from maskcls.rundir import names
from maskcls.rundir.folders import write_rows

log = logging.getLogger("maskcls")
GROUP_FILE = names.GROUP


def group_folder(runs_dir: str | Path, config: Config) -> Path:
    return Path(runs_dir) / f"{config.name}-cv{config.train.folds}"


def cross_validate(
    config: Config,
    *,
    runs_dir: str | Path = "runs",
    devices: list[str] | None = None,
    progress: Progress | None = None,
    on_fold: Callable[[int, str], None] | None = None,
    group: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> CvResult:
    """Train the folds still missing, then write the OOF file and ``cv.json``; returns the group's
    folder (``runs_dir/NAME-cvK`` unless ``group`` names it) and scores. Folds files stay in
    ``runs_dir``. ``on_fold(fold, what)`` after each fold; ``on_epoch(row)`` after each epoch."""
    if config.train.holdout is not None:
        raise UserError("train.holdout is set: cross-validation needs folds (remove train.holdout)")
    from maskcls.training.engine import resolve_device
    from maskcls.training.train import check_parts

    group = Path(group) if group is not None else group_folder(runs_dir, config)
    refuse_if_busy(group)  # at once, before the slow checks below
    check_parts(config)  # a typo in the config leaves no group folder behind
    for device in devices or []:
        resolve_device(device, "devices")
    if devices and len(devices) == 1:  # one device: the folds train here, on it
        config = config.model_copy(update={"train": config.train.model_copy(update={"device": devices[0]})})
    with exclusive_use(group, "cv"):  # a second cv on the same group refuses instead of racing
        start_group(config, group)
        train_missing_folds(
            config, group, runs_dir=runs_dir, devices=devices, progress=progress, on_fold=on_fold, on_epoch=on_epoch
        )
        result = write_cv_results(group)
    if config.data.corrections:
        warn_about_corrections(config, result)
    return CvResult.from_record(group, result)


def train_missing_folds(config: Config, group: Path, *, runs_dir, devices, progress, on_fold, on_epoch=None) -> None:
    pending = [fold for fold in range(config.train.folds) if not fold_finished(group / f"fold{fold}")]
    if on_fold:
        for fold in sorted(set(range(config.train.folds)) - set(pending)):
            on_fold(fold, "already finished")
    if devices and len(devices) > 1:
        train_in_processes(group, runs_dir=runs_dir, folds=pending, devices=devices, on_fold=on_fold)
        return
    for fold in pending:
        try:
            train_fold(config, group, runs_dir=runs_dir, fold=fold, progress=progress, on_epoch=on_epoch)
        except Interrupted:
            raise Interrupted(
                f"interrupted in fold {fold} of {group}; run the same maskcls cv again to continue "
                "(finished folds are kept, the stopped one resumes)"
            ) from None
        if on_fold:
            on_fold(fold, "trained")


def warn_about_corrections(config: Config, result: dict) -> None:
    changed = corrected_labels(config)
    if changed:
        log.warning(
            f"data.corrections changes the labels of {changed} training images, so the out-of-fold targets too: "
            f"CV F1 {result['oof_f1']:.4f} is comparable only with runs that use the same corrections "
            "(compare on the leaderboard, or with the same corrections file)"
        )


def corrected_labels(config: Config) -> int:
    """How many training images a corrections file gives another mask, gender or age group."""
    root = Path(config.data.root)
    plain = read_dataset(root, strict=config.data.strict).train.set_index("path")
    fixed = read_dataset(root, corrections=config.data.corrections, strict=config.data.strict).train.set_index("path")
    fixed = fixed.loc[plain.index]
    groups = [age_groups(table["age"].to_numpy()) for table in (plain, fixed)]
    changed = (plain["mask"] != fixed["mask"]) | (plain["gender"] != fixed["gender"]) | (groups[0] != groups[1])
    return int(changed.sum())


def start_group(config: Config, group: Path) -> Path:
    """Create the group folder, or check that an existing one was made by the same config."""
    plain = to_plain_dict(config)
    plain["train"]["fold"] = 0
    if (group / GROUP_FILE).exists():
        saved = read_json(group / GROUP_FILE)
        if recipe_dict(saved["config"]) != recipe_dict(plain):  # another cache folder or device is the same group
            raise UserError(f"{group}: a cv group with another config already uses this name (set a new `name`)")
        return group
    group.mkdir(parents=True, exist_ok=True)
    write_text_atomic(group / names.CONFIG_YAML, yaml.safe_dump(plain, sort_keys=False))
    runs = [f"fold{fold}" for fold in range(config.train.folds)]
    record = {"name": config.name, "folds": config.train.folds, "seed": config.seed, "runs": runs, "config": plain}
    write_json_atomic(group / GROUP_FILE, record)
    return group


def last_line(text: str) -> str:
    """The last line a failed fold printed, without the ``maskcls: error:`` its CLI put before it."""
    lines = text.strip().splitlines()
    if not lines:
        return "no message (see the fold's folder)"
    return lines[-1].removeprefix("maskcls: error: ")


def fold_finished(run: Path) -> bool:
    return (run / names.RESULT).exists()


def train_fold(
    config: Config, group: Path, *, runs_dir, fold: int, progress: Progress | None, on_epoch: Callable | None = None
) -> FitResult:
    from maskcls.training.train import fit

    run = group / f"fold{fold}"
    if (run / names.LAST_CHECKPOINT).exists():
        return fit(
            config, runs_dir=runs_dir, resume=run, progress=progress, on_finished=refresh_runs_table,
            on_epoch=on_epoch,
        )  # fmt: skip
    fold_config = config.model_copy(deep=True)
    fold_config.train.fold = fold
    return fit(
        fold_config, runs_dir=runs_dir, progress=progress, run_dir=run, on_finished=refresh_runs_table,
        on_epoch=on_epoch,
    )  # fmt: skip


def train_in_processes(group: Path, *, runs_dir, folds: list[int], devices: list[str], on_fold) -> None:
    """One ``maskcls train`` process per device, each taking the next fold until none is left."""
    work: queue.Queue[int] = queue.Queue()
    for fold in folds:
        work.put(fold)
    failures: list[str] = []

    def worker(device: str) -> None:
        while True:
            try:
                fold = work.get_nowait()
            except queue.Empty:
                return
            command = fold_command(group, runs_dir, fold, device)
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                failures.append(f"fold {fold} on {device} failed: {last_line(done.stderr)}")
            elif on_fold:
                on_fold(fold, f"trained on {device}")

    threads = [threading.Thread(target=worker, args=(device,)) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise UserError(*failures)


def fold_command(group: Path, runs_dir, fold: int, device: str) -> list[str]:
    run = group / f"fold{fold}"
    command = [sys.executable, "-m", "maskcls", "train", "--quiet", "--runs-dir", str(runs_dir)]
    if (run / names.LAST_CHECKPOINT).exists():
        return [*command, "--resume", str(run)]
    config = str(group / names.CONFIG_YAML)
    return [*command, config, "--run-dir", str(run), "-o", f"train.fold={fold}", "-o", f"train.device={device}"]


def held_out_f1_at_borders(oof: pd.DataFrame) -> float:
    """The out-of-fold macro F1 of a model that estimates the age, each fold cut at the age borders
    fitted on the other folds (``calibrate``'s held-out figure before biases): the CV of what such a
    model scores, where its own 30 / 60 cut is not."""
    target = oof["target"].to_numpy()
    classes, _, _ = held_out_borders(
        oof[PROBABILITY_COLUMNS].to_numpy(), oof[AGE_ESTIMATE_COLUMN].to_numpy(), oof["age"].to_numpy(), target,
        oof["fold"].to_numpy(),
    )  # fmt: skip
    return macro_f1(target, classes)


def write_cv_results(group: Path) -> dict:
    """``oof_probabilities.csv`` and ``cv.json`` from the fold runs' best-epoch validation files."""
    record = read_json(group / GROUP_FILE)
    parts, folds = [], []
    for fold, name in enumerate(record["runs"]):
        run = group / name
        frame = pd.read_csv(run / names.VALID_PROBABILITIES)
        frame.insert(3, "fold", fold)
        parts.append(frame)
        result = read_json(run / names.RESULT)
        folds.append({"fold": fold, **{key: result[key] for key in ("valid_f1", "valid_accuracy", "best_epoch")}})
    oof = pd.concat(parts, ignore_index=True)
    write_rows(group / names.OOF_PROBABILITIES, oof.to_dict("records"))
    scores = np.array([fold["valid_f1"] for fold in folds])
    metrics = summary(oof["target"].to_numpy(), oof[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    result = {
        "folds": folds,
        "fold_f1_mean": round(float(scores.mean()), 6),
        "fold_f1_std": round(float(scores.std()), 6),
        **{f"oof_{key}": round(value, 6) for key, value in metrics.items()},
        "images": len(oof),
    }
    if {AGE_ESTIMATE_COLUMN, "age"} <= set(oof.columns):
        result["oof_age_mae"] = round(float((oof[AGE_ESTIMATE_COLUMN] - oof["age"]).abs().mean()), 4)
        result["oof_f1_borders"] = round(held_out_f1_at_borders(oof), 6)
    write_json_atomic(group / names.CV_RESULT, result)
    return result
