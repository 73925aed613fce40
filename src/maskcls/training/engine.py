"""One epoch of training and one pass of evaluation over cached uint8 batches.

The step order with AMP is scale -> backward -> unscale_ -> clip -> step -> update, so that gradients
are clipped at their true scale. bf16 autocast needs no scaler; fp16 (CUDA only) uses a GradScaler.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from maskcls.config import check_device_name
from maskcls.data.transforms import augment, normalize, to_float
from maskcls.errors import NonFiniteLoss, UserError
from maskcls.training.distributed import any_rank
from maskcls.training.mixing import maybe_mix, mixed_loss
from maskcls.training.models import target_classes


@dataclass(kw_only=True)
class StepSettings:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None  # torch.bfloat16 / torch.float16, or None for fp32
    channels_last: bool = False
    grad_clip: float | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


@dataclass
class EpochResult:
    loss: float
    predictions: np.ndarray  # argmax class per image (mixed batches: against targets_a)
    targets: np.ndarray
    learning_rate: float
    images: int


def epoch_order(
    indices: np.ndarray, generator: torch.Generator | None = None, sample_weights: np.ndarray | None = None
) -> np.ndarray:
    """The order of one epoch over ``indices``: shuffled when a generator is given, drawn by
    ``sample_weights`` (with replacement) for class-balanced sampling, else as given."""
    indices = np.asarray(indices)
    if generator is None:
        return indices
    if sample_weights is not None:
        weights = torch.as_tensor(sample_weights[indices], dtype=torch.float64)
        return indices[torch.multinomial(weights, len(indices), replacement=True, generator=generator).numpy()]
    return indices[torch.randperm(len(indices), generator=generator).numpy()]


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    batch_size: int,
    generator: torch.Generator | None = None,
    sample_weights: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 (B, H, W, 3) images and their labels (int64, or float32 with a teacher's soft labels)
    over :func:`epoch_order` of ``indices``."""
    order = epoch_order(indices, generator, sample_weights)
    dtype = torch.float32 if np.issubdtype(labels.dtype, np.floating) else torch.int64
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        yield torch.from_numpy(np.asarray(images[chosen])), torch.as_tensor(labels[chosen], dtype=dtype)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def prepare(images_uint8: torch.Tensor, settings: StepSettings) -> torch.Tensor:
    """uint8 batch on the device as float in [0, 1], channels first."""
    return to_float(images_uint8.to(settings.device, non_blocking=True))


def finish(batch: torch.Tensor, settings: StepSettings) -> torch.Tensor:
    """Normalize with the dataset's mean/std; channels_last when asked."""
    batch = normalize(batch, settings.mean, settings.std)
    return batch.contiguous(memory_format=torch.channels_last) if settings.channels_last else batch


def non_finite_message(loss_value: float, batch: int) -> str:
    if math.isfinite(loss_value):
        return f"the loss became NaN or infinite on another process at batch {batch}: lower the learning rate"
    return f"loss became {loss_value} at batch {batch}: lower the learning rate"


def train_one_epoch(
    model: nn.Module,
    loader: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    scheduler,
    settings: StepSettings,
    augmentation: str = "none",
    mixing: str = "none",
    mixing_probability: float = 0.0,
    generator: torch.Generator,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[int], None] | None = None,
    accumulate: int = 1,
    after_step: Callable[[int], None] | None = None,
) -> EpochResult:
    """One pass over ``loader``; each batch is one optimizer step, its gradients summed over
    ``accumulate`` micro-batches (see :func:`forward_backward`). ``after_step(k)`` after the k-th
    step of the epoch (from 1): the weight average's update."""
    model.train()
    total_loss, seen = 0.0, 0
    predictions, targets = [], []
    for images, labels in loader:
        batch = augment(prepare(images, settings), augmentation, generator)
        labels = labels.to(settings.device)
        mixed = maybe_mix(mixing, mixing_probability, batch, labels, rng)
        batch = finish(mixed.images if mixed else batch, settings)
        optimizer.zero_grad(set_to_none=True)
        loss_value, logits = forward_backward(
            model, batch, labels, mixed, criterion, settings, scaler, accumulate, seen // len(labels) + 1
        )
        optimizer_step(model, optimizer, settings, scaler)
        scheduler.step()
        if after_step:
            after_step(len(predictions) + 1)
        total_loss += loss_value * len(labels)
        seen += len(labels)
        predictions.append(unwrap(model).class_probabilities(logits.detach()).argmax(1).cpu().numpy())
        targets.append(target_classes(labels).cpu().numpy())
        if on_batch:
            on_batch(len(labels))
    return EpochResult(
        loss=total_loss / max(seen, 1),
        predictions=np.concatenate(predictions) if predictions else np.array([], int),
        targets=np.concatenate(targets) if targets else np.array([], int),
        learning_rate=optimizer.param_groups[0]["lr"],
        images=seen,
    )


def micro_batches(count: int, parts: int) -> list[slice]:
    """``count`` rows in ``parts`` slices of (nearly) equal size, in order."""
    size = -(-count // max(1, min(parts, count)))
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def forward_backward(
    model, batch, labels, mixed, criterion, settings: StepSettings, scaler, accumulate: int, batch_number: int
) -> tuple[float, torch.Tensor]:
    """The batch's loss and logits; its gradients summed over ``accumulate`` micro-batches, each
    backward freeing its activations before the next forward (memory / ``accumulate``, the same
    effective batch). The loss of each part is weighted by its share of the images, so a loss that
    is a mean over images (cross entropy, focal, label smoothing) gives the whole batch's gradient;
    a batch-level loss (``f1``, class-weighted means) and BatchNorm see each part alone. DDP
    averages gradients once, after the last part. A non-finite loss stops every rank before its
    backward."""
    pieces = micro_batches(len(labels), accumulate)
    total, outputs = 0.0, []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        with nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            with settings.autocast():
                logits = model(batch[piece])
            logits = logits.float()  # the loss in float32, outside autocast (as the outputs are read)
            part = mixed_part(mixed, piece) if mixed else None
            loss = mixed_loss(criterion, logits, part) if part else criterion(logits, labels[piece])
            value = loss.item()
            if any_rank(not math.isfinite(value), settings.device):  # all ranks stop, before backward's all-reduce
                raise NonFiniteLoss(non_finite_message(value, batch_number))
            share = (piece.stop - piece.start) / len(labels)
            backward(loss * share if len(pieces) > 1 else loss, scaler)
        total += value * share
        outputs.append(logits.detach())
    return total, torch.cat(outputs)


def mixed_part(mixed, piece: slice):
    return dataclasses.replace(
        mixed, images=mixed.images[piece], targets_a=mixed.targets_a[piece], targets_b=mixed.targets_b[piece]
    )


def backward(loss: torch.Tensor, scaler) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def optimizer_step(model, optimizer, settings: StepSettings, scaler) -> None:
    """After the backward passes: unscale_ -> clip -> step -> update."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if settings.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


CPU_PIXELS_PER_BATCH = 128 * 96 * 128
"""Pixels in one forward-only batch on the CPU: 128 images at 96x128, 8 at 384x512."""


def inference_batch(batch_size: int, image_size: tuple[int, int], device: torch.device | str) -> int:
    """The batch of a forward pass without gradients (validation, prediction): as asked on a GPU;
    on the CPU capped at :data:`CPU_PIXELS_PER_BATCH` pixels, so that the activations, which take
    most of the memory, do not grow with the picture."""
    if torch.device(device).type != "cpu":
        return batch_size
    return max(1, min(batch_size, CPU_PIXELS_PER_BATCH // (image_size[0] * image_size[1])))


def resolve_device(name: str, what: str = "device") -> torch.device:
    """``auto`` means CUDA when present, else the CPU. A device this machine does not have is a
    UserError naming ``what`` (the option or config key that asked for it), before any work."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(name, what)
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{what}={name}: this machine has no CUDA device; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise UserError(f"{what}={name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{what}={name}: this machine has no MPS device; use cpu or auto")
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``train.amp`` on ``device``, for training and prediction alike:
    bf16 anywhere; fp16 on CUDA only (fp16 autocast is a GPU feature; on a CPU it runs fp32)."""
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16" and device.type == "cuda":
        return torch.float16
    return None


def forward_outputs(
    model: nn.Module, batch: torch.Tensor, settings: StepSettings, tta_flip: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and outputs of a prepared batch: the 18-class probabilities, then the age estimate
    when the model gives one (see :meth:`FaceAttributeModel.outputs`). ``tta_flip`` averages the
    outputs with those of the mirrored batch (the logits stay the plain ones)."""
    with settings.autocast():  # the network in mixed precision; what is read from its logits in float32
        logits = model(batch).float()
        mirrored = model(batch.flip(-1)).float() if tta_flip else None
    outputs = model.outputs(logits)  # outside autocast: a matmul in it would run in bf16 (sums off by 5e-4)
    if mirrored is not None:
        outputs = (outputs + model.outputs(mirrored)) / 2
    return logits, outputs


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, criterion: Callable, settings: StepSettings, tta_flip: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, outputs (N, 18 probabilities [+ age estimate]) and 18-class targets, in loader order."""
    model.eval()
    total_loss, seen = 0.0, 0
    outputs, targets = [], []
    for images, labels in loader:
        batch = finish(prepare(images, settings), settings)
        labels = labels.to(settings.device)
        logits, batch_outputs = forward_outputs(model, batch, settings, tta_flip)
        total_loss += criterion(logits, labels).item() * len(labels)
        seen += len(labels)
        outputs.append(batch_outputs.cpu().numpy())
        targets.append(target_classes(labels).cpu().numpy())
    loss = total_loss / seen if seen else math.nan
    return loss, np.concatenate(outputs), np.concatenate(targets)
