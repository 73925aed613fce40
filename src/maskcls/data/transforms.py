"""Augmentation on whole batches of tensors, each image with its own random draw.

Images come from the cache as uint8; they are augmented after batching, which costs far less
than per-image PIL transforms in data-loader workers. Presets:

- ``none``: nothing (valid and test always use this: resize happened in the cache, then normalize)
- ``seed``: the competition retrospective's augmentation exactly: one of four ColorJitters chosen
  at random per image
  (brightness (0.2, 3) | contrast (0.2, 3) | saturation (0.2, 3) | hue (-0.3, 0.3)), then a
  horizontal flip with p=0.5. The jitters compute what torchvision's functional ops compute.
- ``flip``: the horizontal flip alone (colours as photographed)
- ``light``: ``seed``'s four jitters over narrow ranges (brightness, contrast, saturation 0.8-1.25,
  hue -0.03..0.03), then the flip: for a cue of fine colour (on the synthetic set, the hair's grey
  share that tells 60+ apart, it scored no better than ``seed``)
- ``strong``: ``seed`` plus a random scale/shift (0.85-1.15, up to 8%) and a small rotation.

Normalization uses the dataset's own mean and std (see :func:`channel_stats`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from maskcls.choices import AUGMENTATIONS

JITTER_RANGES = {"brightness": (0.2, 3.0), "contrast": (0.2, 3.0), "saturation": (0.2, 3.0), "hue": (-0.3, 0.3)}
LIGHT_JITTER_RANGES = {
    "brightness": (0.8, 1.25), "contrast": (0.8, 1.25), "saturation": (0.8, 1.25), "hue": (-0.03, 0.03)
}  # fmt: skip


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (N, 3, H, W) -> float (N, 3, H, W) in [0, 1]."""
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.permute(0, 3, 1, 2)
    return batch.float().div_(255)


def grayscale(batch: torch.Tensor) -> torch.Tensor:
    r, g, b = batch.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = ratio.to(device=image.device, dtype=image.dtype).view(-1, 1, 1, 1)
    return (ratio * image + (1 - ratio) * other).clamp_(0, 1)


def random_color_jitter(
    batch: torch.Tensor, generator: torch.Generator, ranges: dict[str, tuple[float, float]] = JITTER_RANGES
) -> torch.Tensor:
    """RandomChoice over the four ColorJitters, one choice and one factor per image."""
    count = len(batch)
    choice = torch.randint(0, 4, (count,), generator=generator)  # drawn on the CPU: the same on any device
    out = batch.clone()
    for index, (name, (low, high)) in enumerate(ranges.items()):
        rows = torch.nonzero(choice == index).flatten()
        if len(rows) == 0:
            continue
        factor = low + (high - low) * torch.rand(len(rows), generator=generator)
        rows = rows.to(batch.device)
        out[rows] = apply_jitter(batch[rows], name, factor)  # factors stay on the CPU (hue reads them one by one)
    return out


def apply_jitter(images: torch.Tensor, name: str, factor: torch.Tensor) -> torch.Tensor:
    if name == "brightness":
        return blend(images, torch.zeros_like(images), factor)
    if name == "contrast":
        mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
        return blend(images, mean.expand_as(images), factor)
    if name == "saturation":
        return blend(images, grayscale(images).expand_as(images), factor)
    return torch.stack([TF.adjust_hue(image, float(f)) for image, f in zip(images, factor, strict=True)])


def random_flip(batch: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(len(batch), generator=generator) < p).to(batch.device).view(-1, 1, 1, 1)
    return torch.where(flip, batch.flip(-1), batch)  # no data-dependent indexing: no sync on a GPU


def random_affine(batch: torch.Tensor, generator: torch.Generator, max_degrees: float = 8.0) -> torch.Tensor:
    count = len(batch)
    scale = 0.85 + 0.3 * torch.rand(count, generator=generator)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * 0.16
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.to(device=batch.device, dtype=batch.dtype)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment(batch: torch.Tensor, preset: str, generator: torch.Generator) -> torch.Tensor:
    """Float batch in [0, 1] -> augmented float batch in [0, 1]."""
    if preset not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {preset!r}; known: {', '.join(AUGMENTATIONS)}")
    if preset == "none":
        return batch
    if preset == "flip":
        return random_flip(batch, generator)
    ranges = LIGHT_JITTER_RANGES if preset == "light" else JITTER_RANGES
    batch = random_flip(random_color_jitter(batch, generator, ranges), generator)
    return random_affine(batch, generator) if preset == "strong" else batch


def normalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


CHUNK_BYTES = 64 * 2**20
"""How much of the image array channel statistics read at a time, whatever the image size."""


def channel_stats(
    images: np.ndarray, rows: np.ndarray | None = None, chunk_bytes: int = CHUNK_BYTES
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of the ``rows`` (default: all) of an (N, H, W, 3) uint8
    array, read straight from a memory map in chunks of about ``chunk_bytes``.

    The sums are exact integers (a sum and a sum of squares per channel, in uint64), so memory
    stays at one chunk plus a third of it, whatever the image size and count."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    per_image = int(np.prod(images.shape[1:]))
    step = max(1, chunk_bytes // max(per_image, 1))
    total, squares = np.zeros(3, dtype=np.uint64), np.zeros(3, dtype=np.uint64)
    for start in range(0, len(rows), step):
        part = np.asarray(images[rows[start : start + step]])
        for channel in range(3):
            values = part[..., channel]
            total[channel] += values.sum(dtype=np.uint64)
            squares[channel] += np.square(values, dtype=np.uint16).sum(dtype=np.uint64)  # 255^2 fits in 16 bits
    pixels = len(rows) * per_image // 3
    mean = total.astype(np.float64) / 255 / pixels
    std = np.sqrt(np.maximum(squares.astype(np.float64) / 255**2 / pixels - mean**2, 1e-12))
    return mean.round(6).tolist(), std.round(6).tolist()
