"""``fit(config)``: train one model on one split and leave a run folder that says everything.

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

import copy
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from maskcls.callbacks import Progress
from maskcls.config import MACHINE_KEYS, Config, set_dotted, to_plain_dict
from maskcls.data.cache import DecodedImages, cached_images
from maskcls.data.layout import read_dataset
from maskcls.data.split import load_or_make_folds, make_holdout, split_rows
from maskcls.data.transforms import channel_stats
from maskcls.errors import Interrupted, NonFiniteLoss, UserError, WriteFailed
from maskcls.figures import confusion_figure, pyplot
from maskcls.files import read_json, write_json_atomic, write_text_atomic
from maskcls.labels import (
    AGE_BORDERS,
    NUM_CLASSES,
    age_groups,
    class_name,
    encode_classes,
    output_columns,
    split_outputs,
)
from maskcls.metrics import summary as metric_summary
from maskcls.rundir import names
from maskcls.rundir.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from maskcls.rundir.folders import environment, new_run_folder, read_rows, write_rows
from maskcls.training.distributed import Distributed, merge_in_order, start_from_environment, stop
from maskcls.training.engine import (
    StepSettings,
    amp_dtype,
    batches,
    epoch_order,
    evaluate,
    inference_batch,
    resolve_device,
    train_one_epoch,
)
from maskcls.training.losses import LOSSES, HeadLoss, head_loss_parts
from maskcls.training.models import check_model_name, model_from_config
from maskcls.training.optim import OPTIMIZERS, SCHEDULERS, create_optimizer, create_scheduler, weight_decay_groups
from maskcls.training.weights import check_weights_file, weights_normalization

log = logging.getLogger("maskcls")
RESUMABLE_KEYS = ("train.early_stopping", "train.epochs")  # and the machine settings, MACHINE_KEYS


@dataclass
class TrainingData:
    images: np.ndarray  # (N, H, W, 3) uint8: the cache's memory map (or DecodedImages)
    table: pd.DataFrame  # one row per image (layout reader's train table)
    train_labels: np.ndarray  # 18 classes with the training age borders
    true_labels: np.ndarray  # 18 classes with the real borders (for evaluation)
    train_rows: np.ndarray
    valid_rows: np.ndarray
    ages: np.ndarray  # age in years per image (what ordinal, regression and distribution heads learn)

    @property
    def train_targets(self) -> np.ndarray:
        """(N, 2): training class and age per image; the batches' targets."""
        return np.column_stack([self.train_labels, self.ages])

    @property
    def true_targets(self) -> np.ndarray:
        return np.column_stack([self.true_labels, self.ages])


def fit(
    config: Config,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: Progress | None = None,
    run_dir: str | Path | None = None,
    on_finished: Callable[[Path], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    resume_changes: dict[str, Any] | None = None,
) -> Path:
    """Train one model on one split; returns the run folder (``runs_dir/NAME-foldK``, made
    unique, or exactly ``run_dir``). ``runs_dir/folds/`` keeps the folds files every run shares.
    Under torchrun every process calls this; rank 0 alone writes, and all return the same path.
    ``on_finished(runs_dir)`` runs in rank 0 after a finished run (the runs table refreshes itself);
    ``on_epoch(row)`` after each epoch (its summary row, plus ``epochs``, ``improved`` and ``run``,
    the run folder's name). Ctrl-C
    raises :class:`Interrupted`, naming the command that continues the run. ``resume_changes``
    (dotted key -> value): what a resume may change, e.g. ``{"train.epochs": 20}``."""
    checkpoint = load_checkpoint(Path(resume) / names.LAST_CHECKPOINT) if resume is not None else None
    if checkpoint is not None:
        config = resume_config(checkpoint, resume_changes or {})
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
            made = start_run_folder(config, runs_dir, mean, std, run_dir) if context.is_main else None
            run = Path(context.broadcast(str(made)))
        trainer = Trainer(config, data, run, mean, std, checkpoint, progress, context, device, on_epoch)
        try:
            run = trainer.run()
        except KeyboardInterrupt:
            raise Interrupted(interrupted_message(run, trainer.epoch, config.train.epochs)) from None
        except WriteFailed as error:
            raise WriteFailed(f"{error}; free some space, then continue with: maskcls train --resume {run}") from None
        if context.is_main and on_finished is not None:
            on_finished(Path(runs_dir))
        return run
    finally:
        stop(context)


def interrupted_message(run: Path, epochs_done: int, epochs: int) -> str:
    if epochs_done == 0:
        return f"interrupted before the first epoch ended; nothing to resume, {run} can be deleted"
    return f"interrupted after epoch {epochs_done} of {epochs}; continue with: maskcls train --resume {run}"


def check_parts(config: Config) -> None:
    """Every name and option of the model, optimizer, scheduler and losses, checked without
    building anything: a typo fails in a moment, with nothing left behind."""
    model, optim = config.model, config.optim
    resolve_device(config.train.device, "train.device")  # a GPU this machine lacks fails here
    check_model_name(model.name)
    if model.weights is not None:
        check_weights_file(model.weights, model.name)
        if model.pretrained:
            log.warning(f"model.pretrained=true is not used: model.weights={model.weights} gives the weights")
    OPTIMIZERS.check(optim.name, params=[], lr=optim.lr, weight_decay=optim.weight_decay, **optim.options)
    SCHEDULERS.check(optim.scheduler, optimizer=None, epochs=1, steps_per_epoch=1, **optim.scheduler_options)
    parts = [(part.name, part.weight, part.options) for part in config.loss]
    for head_parts in head_loss_parts(parts, config.model.head).values():  # class weights fit each head
        for name, _, options in head_parts:
            LOSSES.check(name, **options)


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


def start_run_folder(config: Config, runs_dir: str | Path, mean, std, run_dir: str | Path | None = None) -> Path:
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


def prepare_data_once(config: Config, runs_dir: str | Path, context: Distributed) -> TrainingData:
    """Rank 0 builds the cache and the folds file first; the other ranks then read them."""
    if not context.is_main:
        context.barrier()
    data = prepare_data(config, runs_dir, warn=context.is_main)
    if context.is_main:
        context.barrier()
    return data


def prepare_data(config: Config, runs_dir: str | Path, warn: bool = True) -> TrainingData:
    """Read the table (never truth/), split by person, and map the images from the cache."""
    root = Path(config.data.root)
    dataset = read_dataset(root, corrections=config.data.corrections, strict=config.data.strict)
    table = dataset.train
    if table.empty:
        raise UserError(f"{root}: no training images")
    if config.train.holdout is not None:
        folds = make_holdout(dataset.people, config.train.holdout, config.seed)
        fold = 0
    else:
        folds_file = Path(runs_dir) / "folds" / f"{root.name}-k{config.train.folds}-seed{config.seed}.csv"
        folds = load_or_make_folds(folds_file, dataset.people, config.train.folds, config.seed)
        fold = config.train.fold
        if not 0 <= fold < config.train.folds:
            raise UserError(f"train.fold={fold} is outside 0..{config.train.folds - 1}")
    train_rows, valid_rows = split_rows(table, folds, fold)
    paths, size = list(table["path"]), config.train.image_size
    if config.data.cache:
        images = cached_images(root, paths, size, config.train.cache_dir or Path(runs_dir) / "cache")
    else:
        images = DecodedImages(root, paths, size)
    ages = table["age"].to_numpy()
    mask, gender = table["mask"].to_numpy(), table["gender"].to_numpy()
    true_labels = encode_classes(mask, gender, age_groups(ages, AGE_BORDERS))
    if warn:
        for message in missing_class_warnings(true_labels, train_rows, valid_rows, fold):
            log.warning(message)
    return TrainingData(
        images=images,
        table=table,
        train_labels=encode_classes(mask, gender, age_groups(ages, config.data.age_borders)),
        true_labels=true_labels,
        train_rows=train_rows,
        valid_rows=valid_rows,
        ages=ages.astype(np.int64),
    )


def missing_class_warnings(labels: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray, fold: int) -> list[str]:
    """One line per side of the split that lacks a class the dataset has."""
    present = set(np.unique(labels).tolist())
    messages = []
    for side, rows in (("training", train_rows), ("validation", valid_rows)):
        missing = sorted(present - set(np.unique(labels[rows]).tolist()))
        if missing and len(rows):
            listed = ", ".join(f"{k} ({class_name(k)})" for k in missing)
            messages.append(f"fold {fold}: the {side} part has no images of class {listed}")
    return messages


def fast_forward(scheduler, steps: int) -> None:
    """Step a fresh scheduler as far as a run got (its learning rate only; no weights move)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(steps):
            scheduler.step()


def resume_config(checkpoint: dict, changes: dict[str, Any]) -> Config:
    """The stopped run's config with the changes a resume can make (``RESUMABLE_KEYS``: more
    epochs, another patience; and any machine setting); any other change would not continue the
    same run."""
    refused = sorted(set(changes) - {*RESUMABLE_KEYS, *MACHINE_KEYS})
    if refused:
        raise UserError(
            f"--resume cannot change {', '.join(refused)}: that would not continue the same run (only "
            f"{', '.join(RESUMABLE_KEYS)} and the machine settings {', '.join(MACHINE_KEYS)} can change); "
            "start a new run instead"
        )
    plain = copy.deepcopy(checkpoint["config"])  # the checkpoint keeps the config it was written with
    for key, value in changes.items():
        plain = set_dotted(plain, key, value)
    config = Config.model_validate(plain)
    if config.train.epochs <= checkpoint["epoch"] and "train.epochs" in changes:
        done = checkpoint["epoch"]
        raise UserError(f"--resume: train.epochs={config.train.epochs}, but the run already trained {done} epochs")
    return config


def epoch_seed(*parts: int) -> int:
    """A seed for one (seed, epoch, stream) triple: draws depend only on it, so a resumed run
    repeats exactly what an uninterrupted one does, and each rank augments differently."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class Trainer:
    """Builds the parts with factories and runs the epochs; the step itself is the engine's."""

    def __init__(
        self, config: Config, data: TrainingData, run: Path, mean, std, checkpoint, progress, context, device,
        on_epoch: Callable[[dict], None] | None = None,
    ):  # fmt: skip
        self.config, self.data, self.run_dir, self.context = config, data, run, context
        self.on_epoch = on_epoch if context.is_main else None
        self.progress = progress if context.is_main else None
        train, optim = config.train, config.optim
        device = resolve_device(device)
        amp = amp_dtype(train.amp, device)
        self.settings = StepSettings(device, amp, train.channels_last, optim.grad_clip, tuple(mean), tuple(std))
        self.model = model_from_config(config)
        self.model.start_age_from(data.ages[data.train_rows])  # an age head over years starts at the data's ages
        self.model = self.model.to(device)
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self.model
        if context.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, gradient_as_bucket_view=True
            )
        parts = [(part.name, part.weight, part.options) for part in config.loss]
        self.criterion = HeadLoss(parts, config.model.head, config.model.head_weights, self.model.age)
        groups = weight_decay_groups(self.model, optim.weight_decay, optim.decay_bias_and_norm)
        self.optimizer = create_optimizer(
            optim.name, groups, lr=optim.lr, weight_decay=optim.weight_decay, **optim.options
        )
        self.batch_size = max(1, train.batch_size // context.world_size)  # train.batch_size is the global batch
        self.images_per_epoch = len(context.shard(data.train_rows))
        if train.limit_batches is not None:  # a smoke test: the first batches of every epoch
            self.images_per_epoch = min(self.images_per_epoch, train.limit_batches * self.batch_size)
        self.steps_per_epoch = max(1, -(-self.images_per_epoch // self.batch_size))
        self.scheduler = self.build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 and device.type == "cuda" else None
        self.sample_weights = balanced_weights(data.train_labels, data.train_rows) if train.balanced_sampling else None
        self.epoch, self.best_f1, self.best_epoch, self.stale = 0, -1.0, -1, 0
        self.rows: list[dict] = []
        if checkpoint is not None:
            self.restore(checkpoint)

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> Path:
        train = self.config.train
        writer = self.open_writer()
        total = train.epochs * self.images_per_epoch
        try:
            while self.epoch < train.epochs:
                row = self.one_epoch(total)
                self.rows.append(row)
                improved = row["valid_f1"] > self.best_f1
                if improved:
                    self.best_f1, self.best_epoch, self.stale = row["valid_f1"], row["epoch"], 0
                else:
                    self.stale += 1
                self.epoch += 1
                if self.context.is_main:
                    self.write_epoch(writer, row, improved)
                if self.on_epoch:
                    self.on_epoch({**row, "epochs": train.epochs, "improved": improved, "run": self.run_dir.name})
                if train.early_stopping and self.stale >= train.early_stopping:
                    break
            if writer is not None:
                self.finish(writer)
                self.write_result()
        finally:
            if writer is not None:
                writer.close()
        return self.run_dir

    def open_writer(self):
        if not self.context.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir), purge_step=self.epoch + 1)  # steps are epochs counted from 1

    def write_epoch(self, writer, row: dict, improved: bool) -> None:
        write_rows(self.run_dir / names.SUMMARY, self.rows)
        log_scalars(writer, row, row["epoch"])
        self.save(names.LAST_CHECKPOINT)
        if improved:
            copy_checkpoint(self.run_dir / names.LAST_CHECKPOINT, self.run_dir / names.BEST_CHECKPOINT)
            self.write_valid_probabilities()

    def one_epoch(self, total: int) -> dict:
        started = time.perf_counter()
        data, train, context, seed = self.data, self.config.train, self.context, self.config.seed
        torch.manual_seed(epoch_seed(seed, self.epoch, 1000 + context.rank))  # dropout and the like
        shuffle = torch.Generator().manual_seed(epoch_seed(seed, self.epoch))  # same order on every rank
        augment_generator = torch.Generator().manual_seed(epoch_seed(seed, self.epoch, 1 + context.rank))
        rng = np.random.default_rng(epoch_seed(seed, self.epoch, 2000 + context.rank))
        order = context.shard(epoch_order(data.train_rows, shuffle, self.sample_weights))[: self.images_per_epoch]
        done_before, seen = self.epoch * len(order), 0

        def on_batch(count: int) -> None:
            nonlocal seen
            seen += count
            if self.progress:
                self.progress(done_before + seen, total)

        try:
            result = train_one_epoch(
                self.train_model, batches(data.images, data.train_targets, order, self.batch_size), self.criterion,
                self.optimizer, self.scheduler, self.settings, augmentation=train.augmentation, mixing=train.mixing,
                mixing_probability=train.mixing_probability, generator=augment_generator, rng=rng,
                scaler=self.scaler, on_batch=on_batch, accumulate=train.accumulate,
            )  # fmt: skip
        except NonFiniteLoss as error:
            raise NonFiniteLoss(f"epoch {self.epoch + 1}: {error}; {self.last_good_checkpoint()}") from None
        train_seconds = time.perf_counter() - started
        train_loss, train_predictions, train_targets = gather_results(
            context, result.loss, result.images, result.predictions, result.targets
        )
        valid_loss, outputs, targets = self.validate()
        self.last_outputs = outputs
        probabilities, age_estimates = split_outputs(outputs)
        train_metrics = metric_summary(train_targets, train_predictions)
        valid_metrics = metric_summary(targets, probabilities.argmax(1))
        if age_estimates is not None:
            valid_metrics["age_mae"] = float(np.abs(age_estimates - self.data.ages[self.data.valid_rows]).mean())
        images_per_second = result.images * context.world_size / max(train_seconds, 1e-9)
        return {
            "epoch": self.epoch + 1,  # epochs are counted from 1 everywhere a user reads them
            "lr": result.learning_rate,
            "train_loss": round(train_loss, 6),
            "train_accuracy": round(train_metrics["accuracy"], 6),
            "train_f1": round(train_metrics["f1"], 6),
            "valid_loss": round(valid_loss, 6),
            **{f"valid_{key}": round(value, 6) for key, value in valid_metrics.items()},
            "train_images_per_second": round(images_per_second, 1),
            "seconds": round(time.perf_counter() - started, 2),
        }

    def validate(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, outputs (probabilities [+ age estimate]) and classes of the validation rows.

        Each rank evaluates every world_size-th validation row; the results are merged back
        into validation order, so every rank sees the metrics of the whole validation set."""
        context = self.context
        if context.enabled:
            sync_buffers(self.model)
        rows = self.data.valid_rows[context.rank :: context.world_size]
        size = self.config.train.image_size
        batch = inference_batch(self.batch_size * 2, size, self.settings.device)
        loader = batches(self.data.images, self.data.true_targets, rows, batch)
        loss, outputs, targets = evaluate(self.model, loader, self.criterion, self.settings)
        parts = context.gather((0.0 if len(rows) == 0 else loss * len(rows), len(rows), outputs, targets))
        seen = sum(part[1] for part in parts)
        mean_loss = sum(part[0] for part in parts) / seen if seen else float("nan")
        merged_outputs = merge_in_order([part[2] for part in parts], context.world_size)
        merged_targets = merge_in_order([part[3] for part in parts], context.world_size)
        return mean_loss, merged_outputs, merged_targets

    def write_result(self) -> None:
        """``result.json``: the run finished (all epochs or early stop) and its best epoch."""
        best = next((row for row in self.rows if row["epoch"] == self.best_epoch), {})
        result = {
            "finished": True,
            "epochs_run": self.epoch,
            "best_epoch": self.best_epoch,
            "valid_f1": best.get("valid_f1"),
            "valid_accuracy": best.get("valid_accuracy"),
            "seconds": round(sum(row["seconds"] for row in self.rows), 2),
        }
        write_json_atomic(self.run_dir / names.RESULT, result)

    def last_good_checkpoint(self) -> str:
        if self.epoch == 0:
            return "no checkpoint was written (the first epoch did not finish)"
        return f"the last good checkpoint is {self.run_dir / 'last.pt'} (after epoch {self.epoch})"

    # --- checkpoints ---------------------------------------------------------------------------

    def save(self, name: str) -> None:
        save_checkpoint(
            self.run_dir / name,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "epoch": self.epoch,
                "best_f1": self.best_f1,
                "best_epoch": self.best_epoch,
                "stale": self.stale,
                "config": to_plain_dict(self.config),
                "mean": list(self.settings.mean),
                "std": list(self.settings.std),
            },
        )

    def build_scheduler(self):
        optim = self.config.optim
        return create_scheduler(
            optim.scheduler, self.optimizer, epochs=self.config.train.epochs, steps_per_epoch=self.steps_per_epoch,
            warmup_epochs=optim.warmup_epochs, **optim.scheduler_options,
        )  # fmt: skip

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["config"]["train"]["epochs"] == self.config.train.epochs:
            self.scheduler.load_state_dict(state["scheduler"])
        else:  # more epochs than planned: the schedule is stretched to the new length, at the same step
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            self.scheduler = self.build_scheduler()
            fast_forward(self.scheduler, state["epoch"] * self.steps_per_epoch)
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_f1 = state["epoch"], state["best_f1"]
        self.best_epoch, self.stale = state["best_epoch"], state["stale"]
        self.rows = [
            {key: float(value) if key != "epoch" else int(value) for key, value in row.items()}
            for row in read_rows(self.run_dir / names.SUMMARY)
        ][: self.epoch]

    # --- outputs -------------------------------------------------------------------------------

    def write_valid_probabilities(self) -> None:
        rows = self.data.table.iloc[self.data.valid_rows]
        frame = pd.DataFrame(self.last_outputs, columns=output_columns(self.last_outputs.shape[1]))
        frame.insert(0, "age", self.data.ages[self.data.valid_rows])
        frame.insert(0, "target", self.data.true_labels[self.data.valid_rows])
        frame.insert(0, "profile", rows["profile"].to_numpy())
        frame.insert(0, "path", rows["path"].to_numpy())
        write_rows(self.run_dir / names.VALID_PROBABILITIES, frame.to_dict("records"))

    def finish(self, writer) -> None:
        best = next((row for row in self.rows if row["epoch"] == self.best_epoch), None)
        if best is None:
            return
        best_probabilities = pd.read_csv(self.run_dir / names.VALID_PROBABILITIES)
        figures = validation_figures(self.data, best_probabilities, self.run_dir)
        for name, figure in figures.items():
            writer.add_figure(f"valid/{name}", figure, self.best_epoch)


def gather_results(context: Distributed, loss: float, count: int, predictions, targets):
    """Mean loss, predictions and targets of all ranks' training shards together."""
    parts = context.gather((loss * count, count, predictions, targets))
    seen = sum(part[1] for part in parts)
    return (
        sum(part[0] for part in parts) / max(seen, 1),
        np.concatenate([part[2] for part in parts]),
        np.concatenate([part[3] for part in parts]),
    )


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's BatchNorm running statistics on every rank before evaluation."""
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def balanced_weights(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per image 1 / (training images of its class), counted over ``rows`` only (the validation
    people must not change how often a training image is drawn); 0 outside ``rows``."""
    counts = np.bincount(labels[rows], minlength=NUM_CLASSES).astype(float)
    weights = np.zeros(len(labels))
    weights[rows] = 1.0 / counts[labels[rows]]
    return weights


def log_scalars(writer, row: dict, epoch: int) -> None:
    for key, value in row.items():
        if key in ("epoch", "seconds"):
            continue
        split, _, metric = key.partition("_")
        writer.add_scalar(f"{split}/{metric}" if split in ("train", "valid") else key, value, epoch)


def validation_figures(data: TrainingData, probabilities: pd.DataFrame, run: Path) -> dict:
    """A confusion-matrix heat map and a grid of validation images titled truth / prediction."""
    plt = pyplot()
    predicted = probabilities[[f"p{k}" for k in range(NUM_CLASSES)]].to_numpy().argmax(1)
    truth = probabilities["target"].to_numpy()
    matrix_figure = confusion_figure(truth, predicted, "validation confusion matrix (best epoch)")
    matrix_figure.savefig(run / "confusion.png", dpi=90)
    grid_figure, axes = plt.subplots(3, 6, figsize=(10, 6))
    rows = data.valid_rows[: axes.size]
    for axis, row, true, guess in zip(axes.flat, rows, truth, predicted, strict=False):
        axis.imshow(np.asarray(data.images[row]))
        axis.set_title(f"true {true} / pred {guess}", fontsize=8, color="green" if true == guess else "red")
        axis.axis("off")
    grid_figure.tight_layout()
    grid_figure.savefig(run / "valid_grid.png", dpi=80)
    return {"confusion": matrix_figure, "grid": grid_figure}
