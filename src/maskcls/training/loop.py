"""The training loop: the parts a run trains with, built by factories from the config, and the
:class:`Trainer` that runs the epochs, keeps the early-stopping state and hands what each epoch
produced to the run writer. The step itself is the engine's."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskcls.callbacks import Progress
from maskcls.config import Config, to_plain_dict
from maskcls.errors import NonFiniteLoss
from maskcls.evaluation.age_borders import f1_at_fitted_borders
from maskcls.labels import split_outputs
from maskcls.metrics import summary as metric_summary
from maskcls.results import selection_f1
from maskcls.rundir import names
from maskcls.training.distributed import Distributed, merge_in_order
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
from maskcls.training.losses import HeadLoss
from maskcls.training.models import model_from_config
from maskcls.training.optim import create_optimizer, create_scheduler, weight_decay_groups
from maskcls.training.prepare import TrainingData, balanced_weights
from maskcls.training.resume import fast_forward


@dataclass(kw_only=True)
class TrainingParts:
    """The model (and its DDP wrapper), loss, optimizer, schedule and step settings of a run."""

    model: torch.nn.Module
    train_model: torch.nn.Module  # the model itself, or its DistributedDataParallel wrapper
    criterion: HeadLoss
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler | None
    settings: StepSettings
    batch_size: int  # this process's share of train.batch_size
    images_per_epoch: int
    steps_per_epoch: int
    sample_weights: np.ndarray | None  # balanced sampling's per-image weights
    average: torch.nn.Module | None = None  # train.ema's ModelEmaV3: the weights that are scored and kept

    @property
    def scored_model(self) -> torch.nn.Module:
        """What validation scores and best.pt keeps: the weight average when there is one."""
        return self.average.module if self.average is not None else self.model


def build_parts(config: Config, data: TrainingData, *, mean, std, context: Distributed, device) -> TrainingParts:
    train, optim = config.train, config.optim
    device = resolve_device(device)
    amp = amp_dtype(train.amp, device)
    model = model_from_config(config)
    model.initialise_age_head(data.ages[data.train_rows])  # an age head over years starts at the data's ages
    model = model.to(device)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = model
    if context.enabled:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
    parts = [(part.name, part.weight, part.options) for part in config.loss]
    groups = weight_decay_groups(model, optim.weight_decay, optim.decay_bias_and_norm)
    optimizer = create_optimizer(optim.name, groups, lr=optim.lr, weight_decay=optim.weight_decay, **optim.options)
    batch_size = max(1, train.batch_size // context.world_size)  # train.batch_size is the global batch
    images_per_epoch = len(context.shard(data.train_rows))
    if train.limit_batches is not None:  # a smoke test: the first batches of every epoch
        images_per_epoch = min(images_per_epoch, train.limit_batches * batch_size)
    steps_per_epoch = max(1, -(-images_per_epoch // batch_size))
    return TrainingParts(
        model=model,
        train_model=train_model,
        criterion=HeadLoss(parts, config.model.head, config.model.head_weights, model.age, config.train.distill),
        optimizer=optimizer,
        scheduler=make_scheduler(config, optimizer, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda") if amp == torch.float16 and device.type == "cuda" else None,
        settings=StepSettings(
            device=device,
            amp_dtype=amp,
            channels_last=train.channels_last,
            grad_clip=optim.grad_clip,
            mean=tuple(mean),
            std=tuple(std),
        ),  # fmt: skip
        batch_size=batch_size,
        images_per_epoch=images_per_epoch,
        steps_per_epoch=steps_per_epoch,
        sample_weights=balanced_weights(data.train_labels, data.train_rows) if train.balanced_sampling else None,
        average=weight_average(model, train.ema),
    )


def weight_average(model: torch.nn.Module, decay: float | None):
    """timm's ModelEmaV3 of ``model`` (parameters and BatchNorm statistics), with warm-up: early
    steps average over few steps, so that a short run is not pulled back to its first weights."""
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True)


def make_scheduler(config: Config, optimizer, steps_per_epoch: int):
    optim = config.optim
    return create_scheduler(
        optim.scheduler, optimizer, epochs=config.train.epochs, steps_per_epoch=steps_per_epoch,
        warmup_epochs=optim.warmup_epochs, **optim.scheduler_options,
    )  # fmt: skip


@dataclass
class BestSoFar:
    """Early stopping's state: the best :func:`selection_f1`, its epoch, and epochs since it."""

    f1: float = -1.0
    epoch: int = -1
    stale: int = 0

    def update(self, f1: float, epoch: int) -> bool:
        """Count one epoch; True when it is the best so far."""
        if f1 > self.f1:
            self.f1, self.epoch, self.stale = f1, epoch, 0
            return True
        self.stale += 1
        return False


def epoch_seed(*parts: int) -> int:
    """A seed for one (seed, epoch, stream) triple: draws depend only on it, so a resumed run
    repeats exactly what an uninterrupted one does, and each rank augments differently."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class Trainer:
    """Runs the epochs of one run: trains, validates, keeps the best-so-far, and gives each
    epoch's row, state and validation outputs to ``writer`` (a :class:`NullWriter` off rank 0)."""

    def __init__(
        self,
        *,
        config: Config,
        data: TrainingData,
        parts: TrainingParts,
        context: Distributed,
        writer,
        folder: Path,
        progress: Progress | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ):
        self.config, self.data, self.parts, self.context, self.writer = config, data, parts, context, writer
        self.folder, self.model = folder, parts.model
        self.progress = progress if context.is_main else None
        self.on_epoch = on_epoch if context.is_main else None
        self.epoch = 0  # epochs done
        self.best = BestSoFar()
        self.rows: list[dict] = []
        self.last_outputs: np.ndarray | None = None

    # --- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly (the checkpoint's contents)."""
        parts = self.parts
        trained = {"trained_model": parts.model.state_dict()} if parts.average is not None else {}
        return {
            "model": parts.scored_model.state_dict(),  # what predict loads: the weight average when on
            **trained,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler else None,
            "epoch": self.epoch,
            "best_f1": self.best.f1,
            "best_epoch": self.best.epoch,
            "stale": self.best.stale,
            "config": to_plain_dict(self.config),
            "mean": list(parts.settings.mean),
            "std": list(parts.settings.std),
        }

    def load_state_dict(self, state: dict, rows: list[dict]) -> None:
        """Continue from a checkpoint's ``state`` and the summary ``rows`` of its epochs."""
        parts = self.parts
        parts.model.load_state_dict(state.get("trained_model", state["model"]))
        if parts.average is not None:
            parts.average.module.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        if state["config"]["train"]["epochs"] == self.config.train.epochs:
            parts.scheduler.load_state_dict(state["scheduler"])
        else:  # more epochs than planned: the schedule is stretched to the new length, at the same step
            for group in parts.optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            parts.scheduler = make_scheduler(self.config, parts.optimizer, parts.steps_per_epoch)
            fast_forward(parts.scheduler, state["epoch"] * parts.steps_per_epoch)
        if parts.scaler and state["scaler"]:
            parts.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]
        self.best = BestSoFar(state["best_f1"], state["best_epoch"], state["stale"])
        self.rows = rows[: self.epoch]

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        train = self.config.train
        total = train.epochs * self.parts.images_per_epoch
        try:
            while self.epoch < train.epochs:
                row = self.one_epoch(total)
                self.rows.append(row)
                improved = self.best.update(selection_f1(row), row["epoch"])
                self.epoch += 1
                best = improved and self.context.is_main  # the validation table only where it is written
                best_probabilities = self.data.valid_probabilities(self.last_outputs) if best else None
                self.writer.epoch_done(self.rows, self.state_dict(), best_probabilities)
                if self.on_epoch:
                    folder = {"run": self.folder.name, "folder": str(self.folder)}
                    self.on_epoch({**row, "epochs": train.epochs, "improved": improved, **folder})
                if train.early_stopping and self.best.stale >= train.early_stopping:
                    break
            self.writer.finish(self.rows, self.best.epoch, self.data.images, self.data.valid_rows)
        finally:
            self.writer.close()

    def one_epoch(self, total: int) -> dict:
        started = time.perf_counter()
        data, parts, train, context, seed = self.data, self.parts, self.config.train, self.context, self.config.seed
        torch.manual_seed(epoch_seed(seed, self.epoch, 1000 + context.rank))  # dropout and the like
        shuffle = torch.Generator().manual_seed(epoch_seed(seed, self.epoch))  # same order on every rank
        augment_generator = torch.Generator().manual_seed(epoch_seed(seed, self.epoch, 1 + context.rank))
        rng = np.random.default_rng(epoch_seed(seed, self.epoch, 2000 + context.rank))
        order = context.shard(epoch_order(data.train_rows, shuffle, parts.sample_weights))[: parts.images_per_epoch]
        done_before, seen = self.epoch * len(order), 0

        def on_batch(count: int) -> None:
            nonlocal seen
            seen += count
            if self.progress:
                self.progress(done_before + seen, total)

        try:
            result = train_one_epoch(
                parts.train_model, batches(data.images, data.train_targets, order, parts.batch_size),
                criterion=parts.criterion, optimizer=parts.optimizer, scheduler=parts.scheduler,
                settings=parts.settings, augmentation=train.augmentation,
                mixing=train.mixing, mixing_probability=train.mixing_probability, generator=augment_generator,
                rng=rng, scaler=parts.scaler, on_batch=on_batch, accumulate=train.accumulate,
                after_step=self.average_step,
            )  # fmt: skip
        except NonFiniteLoss as error:
            raise NonFiniteLoss(f"epoch {self.epoch + 1}: {error}; {self.last_good_checkpoint()}") from None
        train_seconds = time.perf_counter() - started
        train_loss, train_predictions, train_targets = gather_results(
            context, loss=result.loss, count=result.images, predictions=result.predictions, targets=result.targets
        )
        valid_loss, outputs, targets = self.validate()
        self.last_outputs = outputs
        probabilities, age_estimates = split_outputs(outputs)
        train_metrics = metric_summary(train_targets, train_predictions)
        valid_metrics = metric_summary(targets, probabilities.argmax(1))
        if age_estimates is not None:
            ages = data.ages[data.valid_rows]
            valid_metrics["age_mae"] = float(np.abs(age_estimates - ages).mean())
            valid_metrics["f1_borders"] = f1_at_fitted_borders(probabilities, age_estimates, ages, targets)
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

    def average_step(self, step_in_epoch: int) -> None:
        """The weight average takes the weights after each optimizer step (steps counted over the
        run, so that a resumed run warms up exactly as an uninterrupted one)."""
        if self.parts.average is not None:
            self.parts.average.update(self.parts.model, step=self.epoch * self.parts.steps_per_epoch + step_in_epoch)

    def validate(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, outputs (probabilities [+ age estimate]) and classes of the validation rows.

        Each rank evaluates every world_size-th validation row; the results are merged back
        into validation order, so every rank sees the metrics of the whole validation set."""
        context, parts = self.context, self.parts
        if context.enabled:
            sync_buffers(parts.scored_model)
        rows = self.data.valid_rows[context.rank :: context.world_size]
        batch = inference_batch(parts.batch_size * 2, self.config.train.image_size, parts.settings.device)
        loader = batches(self.data.images, self.data.true_targets, rows, batch)
        flip = self.config.train.valid_tta == "flip"
        loss, outputs, targets = evaluate(parts.scored_model, loader, parts.criterion, parts.settings, tta_flip=flip)
        gathered = context.gather((0.0 if len(rows) == 0 else loss * len(rows), len(rows), outputs, targets))
        seen = sum(part[1] for part in gathered)
        mean_loss = sum(part[0] for part in gathered) / seen if seen else float("nan")
        merged_outputs = merge_in_order([part[2] for part in gathered], context.world_size)
        merged_targets = merge_in_order([part[3] for part in gathered], context.world_size)
        return mean_loss, merged_outputs, merged_targets

    def last_good_checkpoint(self) -> str:
        if self.epoch == 0:
            return "no checkpoint was written (the first epoch did not finish)"
        return f"the last good checkpoint is {self.folder / names.LAST_CHECKPOINT} (after epoch {self.epoch})"


def gather_results(context: Distributed, *, loss: float, count: int, predictions, targets):
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
