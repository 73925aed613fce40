"""Grad-CAM per head, with captum's ``LayerGradCam``: the gradient of each head's log-probability
of a class, averaged over a feature map's positions, weighs that map's channels; the weighted sum
(negative parts cut) is the evidence for the class at each position, upsampled to the input.

Why captum: on the demo model (EfficientNet-Lite0, 72x96, 64 photos, 2 cores) it took 1.9-2.5 ms
per image and head, as fast as torchcam and 5-7x faster than pytorch-grad-cam (12.8-16.7 ms), and
the three gave the same maps (correlation 1.000; ``bench/cam_libraries.py``); it is kept by the
PyTorch organisation, needs nothing this project lacks (no OpenCV), and explains any function
of the input, so a head's slice of a multi-head model's outputs needs no wrapper module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from maskcls.labels import HEAD_SIZES, head_marginals


@dataclass
class HeadMaps:
    """One head's maps of a batch: the class each map explains, the head's probabilities, and the
    maps (N, H, W) at the input's size, each scaled to a maximum of 1 (all zeros: no evidence)."""

    classes: np.ndarray
    probabilities: np.ndarray
    maps: np.ndarray


def head_names(model: nn.Module) -> list[str]:
    """``mask``, ``gender``, ``age`` for three heads; ``class`` (the 18 classes) for one."""
    return list(HEAD_SIZES) if model.head == "multi" else ["class"]


def head_log_probabilities(model: nn.Module, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each head's log-probabilities (N, K); an age head over exact ages gives its three groups'."""
    parts = model.head_logits(logits.float())
    if model.head == "single":
        return {"class": parts["class"].log_softmax(dim=1)}
    age = model.age.group_probabilities(parts["age"]).clamp_min(1e-12).log()
    return {"mask": parts["mask"].log_softmax(dim=1), "gender": parts["gender"].log_softmax(dim=1), "age": age}


def activation_maps(
    model: nn.Module, batch: torch.Tensor, layer: nn.Module, classes: dict[str, np.ndarray] | None = None
) -> dict[str, HeadMaps]:
    """Maps of every head for a prepared batch; ``classes[head]`` says which class to explain (by
    default the head's predicted one)."""
    from captum.attr import LayerAttribution, LayerGradCam

    model = model.eval()
    with torch.no_grad():
        probabilities = {head: values.exp() for head, values in head_log_probabilities(model, model(batch)).items()}
    found = {}
    for head, values in probabilities.items():
        chosen = classes[head] if classes and head in classes else values.argmax(dim=1).cpu().numpy()
        explainer = LayerGradCam(lambda images, head=head: head_log_probabilities(model, model(images))[head], layer)
        with torch.enable_grad():
            raw = explainer.attribute(
                batch, target=torch.as_tensor(chosen, device=batch.device), relu_attributions=True
            )
        upsampled = LayerAttribution.interpolate(raw.detach().float(), tuple(batch.shape[-2:]), "bilinear")[:, 0]
        found[head] = HeadMaps(np.asarray(chosen), values.cpu().numpy(), scaled(upsampled.clamp_min(0).cpu().numpy()))
    return found


def predicted_classes(probabilities: np.ndarray, heads: list[str]) -> dict[str, np.ndarray]:
    """The class each head's map explains, read from 18-class probabilities (calibrated ones too):
    each head's most probable value, or the most probable class for one head."""
    if heads == ["class"]:
        return {"class": np.asarray(probabilities).argmax(axis=1)}
    return {head: values.argmax(axis=1) for head, values in head_marginals(probabilities).items()}


def scaled(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (a map without evidence stays zeros)."""
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]).astype(np.float32)


def mean_maps(found: list[dict[str, HeadMaps]]) -> dict[str, HeadMaps]:
    """Several models' maps of the same photos and classes (a cv group's folds): the mean map,
    scaled again, and the mean probabilities."""
    heads = found[0]
    return {
        head: HeadMaps(
            heads[head].classes,
            np.mean([each[head].probabilities for each in found], axis=0),
            scaled(np.mean([each[head].maps for each in found], axis=0)),
        )
        for head in heads
    }
