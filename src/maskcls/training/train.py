"""``fit(config)``: train one model on one split and leave a run folder that says everything.
The parts: the data (prepare.py), the resume rules (resume.py), the loop (loop.py) and the
run writer (rundir/writer.py), which writes:

runs/NAME/  config.json   resolved config + dataset mean/std + git commit + versions
            summary.csv   one row per epoch (train and valid loss / accuracy / macro F1, lr, time)
            events.out.tfevents.*  TensorBoard: the same scalars, per-head F1, figures
            (runs_dir/hparams/ is refreshed at the end: the runs table for the HPARAMS tab)
            last.pt, best.pt       checkpoints (best by valid macro F1, the competition metric)
            valid_probabilities.csv  18-class probabilities of the best epoch per valid image
            confusion.png, valid_grid.png
            result.json            written last: the run finished; best epoch, its F1, seconds
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskcls.callbacks import Progress
from maskcls.config import Config, to_plain_dict
from maskcls.data.transforms import channel_stats
from maskcls.errors import Interrupted, UserError, WriteFailed
from maskcls.files import read_json, write_json_atomic, write_text_atomic
from maskcls.results import FitResult
from maskcls.rundir import names
from maskcls.rundir.checkpoint import load_checkpoint
from maskcls.rundir.folders import environment, new_run_folder
from maskcls.rundir.writer import NullWriter, RunWriter
from maskcls.training.distributed import start_from_environment, stop
from maskcls.training.engine import resolve_device
from maskcls.training.loop import Trainer, build_parts
from maskcls.training.losses import LOSSES, head_loss_parts
from maskcls.training.models import check_model_name
from maskcls.training.optim import OPTIMIZERS, SCHEDULERS
from maskcls.training.prepare import TrainingData, prepare_data_once
from maskcls.training.resume import interrupted_message, resume_config, rows_before
from maskcls.training.weights import (
    FOLD_FIELD,
    check_weights_file,
    every_fold_weights,
    fold_weights,
    weights_normalization,
)

log = logging.getLogger("maskcls")


def fit(
    config: Config,
    *,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: Progress | None = None,
    run_dir: str | Path | None = None,
    on_finished: Callable[[Path], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    resume_changes: dict[str, Any] | None = None,
) -> FitResult:
    """Train one model on one split; returns the run's folder (``runs_dir/NAME-foldK``, made
    unique, or exactly ``run_dir``) and its best epoch's validation metrics. ``runs_dir/folds/``
    keeps the folds files every run shares. Under torchrun every process calls this; rank 0 alone
    writes, and all return the same result. ``on_finished(runs_dir)`` runs in rank 0 after a
    finished run (the runs table refreshes itself); ``on_epoch(row)`` after each epoch (its summary
    row, plus ``epochs``, ``improved`` and ``run``, the run folder's name). Ctrl-C raises
    :class:`Interrupted`, naming the command that continues the run. ``resume`` continues the
    stopped run in that folder; ``resume_changes`` (dotted key -> value) is what it may change,
    e.g. ``{"train.epochs": 20}``."""
    checkpoint = load_checkpoint(Path(resume) / names.LAST_CHECKPOINT) if resume is not None else None
    if checkpoint is not None:
        config = resume_config(checkpoint, resume_changes or {})
    config = with_fold_weights(config)
    context, device = start_from_environment(config.train.device)
    try:
        configure_torch(config)
        check_parts(config)  # before the data is touched or a folder made
        data = prepare_data_once(config, runs_dir, context)
        if checkpoint is not None:
            run, mean, std = Path(resume), checkpoint["mean"], checkpoint["std"]
            log.info(f"{run}: resuming after epoch {checkpoint['epoch']} of {config.train.epochs}")
            if resume_changes and context.is_main:
                write_json_atomic(run / names.CONFIG, {**read_json(run / names.CONFIG), **to_plain_dict(config)})
        else:
            mean, std = input_normalization(config, data)
            made = start_run_folder(config, runs_dir, mean=mean, std=std, run_dir=run_dir) if context.is_main else None
            run = Path(context.broadcast(str(made)))
        parts = build_parts(config, data, mean=mean, std=std, context=context, device=device)
        done = checkpoint["epoch"] if checkpoint is not None else 0
        writer = RunWriter(run, first_epoch=done) if context.is_main else NullWriter()
        trainer = Trainer(
            config=config, data=data, parts=parts, context=context, writer=writer, folder=run, progress=progress,
            on_epoch=on_epoch,
        )  # fmt: skip
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint, rows_before(run, checkpoint["epoch"]))
        try:
            trainer.run()
        except KeyboardInterrupt:
            raise Interrupted(interrupted_message(run, trainer.epoch, config.train.epochs)) from None
        except WriteFailed as error:
            raise WriteFailed(f"{error}; free some space, then continue with: maskcls train --resume {run}") from None
        if context.is_main and on_finished is not None:
            on_finished(Path(runs_dir))
        return FitResult.from_rows(run, trainer.rows, trainer.best.epoch)
    finally:
        stop(context)


def check_parts(config: Config) -> None:
    """Every name and option of the model, optimizer, scheduler and losses, checked without
    building anything: a typo fails in a moment, with nothing left behind."""
    model, optim = config.model, config.optim
    resolve_device(config.train.device, "train.device")  # a GPU this machine lacks fails here
    check_model_name(model.name)
    if model.weights is not None:
        for weights in every_fold_weights(model.weights, config.train.folds):  # a cv checks them all at once
            check_weights_file(weights, model.name)
        if model.pretrained:
            log.warning(f"model.pretrained=true is not used: model.weights={model.weights} gives the weights")
    OPTIMIZERS.check(optim.name, params=[], lr=optim.lr, weight_decay=optim.weight_decay, **optim.options)
    SCHEDULERS.check(optim.scheduler, optimizer=None, epochs=1, steps_per_epoch=1, **optim.scheduler_options)
    parts = [(part.name, part.weight, part.options) for part in config.loss]
    for head_parts in head_loss_parts(parts, config.model.head).values():  # class weights fit each head
        for name, _, options in head_parts:
            LOSSES.check(name, **options)


def with_fold_weights(config: Config) -> Config:
    """The config with ``model.weights`` naming this run's own file when it names each fold's."""
    weights = config.model.weights
    if weights is None or FOLD_FIELD not in weights:
        return config
    changed = config.model_copy(deep=True)
    changed.model.weights = fold_weights(weights, config.train.fold)
    return changed


def input_normalization(config: Config, data: TrainingData) -> tuple[list[float], list[float]]:
    """The mean/std inputs are normalised with (``model.normalize``): the weights' own for a
    backbone that starts from weights, the training images' channel statistics (streamed from the
    memory map) for one trained from scratch. Stored in the run; predict, export and serve use it."""
    model = config.model
    source = model.normalize
    if source == "auto":
        source = "weights" if model.pretrained or model.weights is not None else "dataset"
    if source == "weights":
        return weights_normalization(model.name, model.weights)
    return channel_stats(data.images, np.sort(data.train_rows))


def start_run_folder(config: Config, runs_dir: str | Path, *, mean, std, run_dir: str | Path | None = None) -> Path:
    if run_dir is None:
        run = new_run_folder(runs_dir, f"{config.name}-fold{config.train.fold}")
    else:
        run = Path(run_dir)
        if (run / names.LAST_CHECKPOINT).exists():
            raise UserError(f"{run}: already holds a run (continue it with --resume)")
        run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / names.CONFIG, {**to_plain_dict(config), "mean": mean, "std": std, **environment()})
    crop_settings = Path(config.data.root) / names.CROP_SETTINGS  # how the training faces were cut (serve repeats it)
    if crop_settings.exists():
        write_text_atomic(run / names.CROP_SETTINGS, crop_settings.read_text(encoding="utf-8"))
    return run


def configure_torch(config: Config) -> None:
    torch.manual_seed(config.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
