"""Optimizers and learning-rate schedulers by name.

``create_optimizer("madgrad", params, lr=1e-4)``;
``create_scheduler("cyclic", optimizer, epochs=10, steps_per_epoch=50, warmup_epochs=1)``.
Every scheduler here is stepped once per batch (``scheduler.step()`` after ``optimizer.step()``);
epoch-based ones (step, cosine) are expressed in batches, so they give the same learning rate at
every epoch boundary as their per-epoch form and combine smoothly with a linear warmup.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim import lr_scheduler

from maskcls.registry import Registry

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
SCHEDULERS: Registry[lr_scheduler.LRScheduler] = Registry("scheduler")


@OPTIMIZERS.register("sgd")
def sgd(params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


@OPTIMIZERS.register("adam")
def adam(params, lr: float = 1e-3, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float = 1e-3, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999)):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("madgrad")
def madgrad(params, lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 0.0):
    from madgrad import MADGRAD

    return MADGRAD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def create_optimizer(name: str, params: Iterable, **kwargs) -> torch.optim.Optimizer:
    return OPTIMIZERS.create(name, params=params, **kwargs)


def weight_decay_groups(model: torch.nn.Module, weight_decay: float, decay_bias_and_norm: bool = False) -> list[dict]:
    """Parameter groups as timm and torchvision make them: biases and norm weights (every tensor
    of one dimension or less) without weight decay, the rest with it."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if decay_bias_and_norm:
        return [{"params": parameters, "weight_decay": weight_decay}]
    return [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]


@SCHEDULERS.register("none")
def constant(optimizer, epochs: int, steps_per_epoch: int):
    return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("step")
def step(optimizer, epochs: int, steps_per_epoch: int, step_epochs: int = 20, gamma: float = 0.5):
    """StepLR: multiply by ``gamma`` every ``step_epochs`` epochs (the official baseline's)."""
    return lr_scheduler.StepLR(optimizer, step_size=max(1, step_epochs * steps_per_epoch), gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(optimizer, epochs: int, steps_per_epoch: int, min_lr: float = 0.0):
    """CosineAnnealingLR over the whole run, down to ``min_lr``."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch), eta_min=min_lr)


@SCHEDULERS.register("cyclic")
def cyclic(
    optimizer,
    epochs: int,
    steps_per_epoch: int,
    base_lr: float | None = None,
    max_lr: float | None = None,
    cycle_epochs: float = 2.0,
    mode: str = "triangular2",
):
    """CyclicLR (the retrospective's choice): up and down between base_lr and max_lr each cycle;
    ``triangular2`` halves the amplitude every cycle, so the rate ends low."""
    lr = optimizer.param_groups[0]["lr"]
    up = max(1, round(cycle_epochs * steps_per_epoch / 2))
    return lr_scheduler.CyclicLR(
        optimizer,
        base_lr=base_lr if base_lr is not None else lr / 10,
        max_lr=max_lr if max_lr is not None else lr,
        step_size_up=up,
        mode=mode,
        cycle_momentum=False,
    )


def create_scheduler(
    name: str, optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0, **kwargs
) -> lr_scheduler.LRScheduler:
    """A per-batch scheduler, optionally after a linear warmup from 1% of the rate."""
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup <= 0:
        return SCHEDULERS.create(name, optimizer=optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, **kwargs)
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
    rest_epochs = max(1, epochs - int(warmup_epochs))
    main = SCHEDULERS.create(name, optimizer=optimizer, epochs=rest_epochs, steps_per_epoch=steps_per_epoch, **kwargs)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
