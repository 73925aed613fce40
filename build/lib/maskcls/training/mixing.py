"""Batch mixing: ``cutmix_vertical`` (the retrospective's CutMix), box ``cutmix`` and ``mixup``.

Each returns a :class:`MixedBatch`; the loss is ``weight * L(out, a) + (1 - weight) * L(out, b)``
(:func:`mixed_loss`), which works for one head or three, since ``L`` splits the targets itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

METHODS = ("none", "cutmix_vertical", "cutmix", "mixup")


@dataclass
class MixedBatch:
    images: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    weight_a: float  # weight of the loss on targets_a


def cutmix_vertical(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> MixedBatch:
    """As the retrospective used it: a vertical strip of width ``W * r`` (r ~ Beta(1, 1)) at a
    random x is pasted from a shuffled batch; loss ``r * L(a) + (1 - r) * L(b)``.

    Reproduced exactly, weighting included: the pasted strip (width share r) comes from b while
    r weighs a. Use ``cutmix`` for the area-proportional weighting of the original paper.
    """
    width = images.shape[-1]
    ratio = float(rng.beta(1.0, 1.0))
    cut = int(width * ratio)
    start = int(rng.integers(0, width - cut + 1))
    order = torch.from_numpy(rng.permutation(len(images)))
    mixed = images.clone()
    mixed[:, :, :, start : start + cut] = images[order, :, :, start : start + cut]
    return MixedBatch(mixed, targets, targets[order], ratio)


def cutmix(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, alpha: float = 1.0) -> MixedBatch:
    """Yun et al. 2019: a box of area share ``1 - lam`` from a shuffled batch; the weight of a
    is the share of the image that is still a's after clipping the box to the image."""
    height, width = images.shape[-2:]
    lam = float(rng.beta(alpha, alpha))
    cut_h, cut_w = int(height * np.sqrt(1 - lam)), int(width * np.sqrt(1 - lam))
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    order = torch.from_numpy(rng.permutation(len(images)))
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[order, :, y0:y1, x0:x1]
    weight_a = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    return MixedBatch(mixed, targets, targets[order], float(weight_a))


def mixup(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, alpha: float = 0.4) -> MixedBatch:
    """Zhang et al. 2018: ``lam * x_a + (1 - lam) * x_b``, lam ~ Beta(alpha, alpha)."""
    lam = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(len(images)))
    return MixedBatch(lam * images + (1 - lam) * images[order], targets, targets[order], lam)


MIXERS: dict[str, Callable[..., MixedBatch]] = {"cutmix_vertical": cutmix_vertical, "cutmix": cutmix, "mixup": mixup}


def maybe_mix(
    method: str, probability: float, images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator
) -> MixedBatch | None:
    """Mix this batch with ``probability`` (one draw per batch, as in the retrospective)."""
    if method not in METHODS:
        raise ValueError(f"unknown mixing {method!r}; known: {', '.join(METHODS)}")
    if method == "none" or rng.random() >= probability:
        return None
    return MIXERS[method](images, targets, rng)


def mixed_loss(criterion: Callable, logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    return batch.weight_a * criterion(logits, batch.targets_a) + (1 - batch.weight_a) * criterion(
        logits, batch.targets_b
    )
