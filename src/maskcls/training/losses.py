"""Losses by name (a registry, like timm's factories), with kwargs from the config.

``create_loss("focal", gamma=2.0)``; a weighted sum is ``create_loss([("cross_entropy", 1.0, {}),
("f1", 0.5, {})])``. Every loss takes logits (N, C) and integer targets (N,) and returns a scalar.
Mixing (cutmix, mixup) combines two targets as ``r * loss(a) + (1 - r) * loss(b)`` outside.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from maskcls.errors import UserError
from maskcls.labels import CLASS_CUBE, HEAD_AXES, HEAD_SIZES, NUM_CLASSES, head_marginals
from maskcls.registry import Registry
from maskcls.training.age import AgeHead
from maskcls.training.models import head_targets, split_head_logits, target_ages, teacher_probabilities

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Plain cross entropy; ``weight`` (per-class) as a list."""

    def __init__(self, weight: Sequence[float] | None = None):
        super().__init__(weight=torch.tensor(weight, dtype=torch.float32) if weight is not None else None)


@LOSSES.register("label_smoothing")
class LabelSmoothingLoss(nn.Module):
    """Cross entropy against ``(1 - smoothing)`` on the target and ``smoothing / (C - 1)`` elsewhere."""

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(dim=-1)
        classes = logits.shape[-1]
        soft = torch.full_like(log_probs, self.smoothing / (classes - 1))
        soft.scatter_(1, target.unsqueeze(1), 1 - self.smoothing)
        return -(soft * log_probs).sum(dim=-1).mean()


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """``-(1 - p_t)^gamma * log p_t`` (Lin et al.); gamma 0 is cross entropy."""

    def __init__(self, gamma: float = 2.0, weight: Sequence[float] | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32) if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_pt = logits.log_softmax(dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()


@LOSSES.register("f1")
class F1Loss(nn.Module):
    """``1 - soft macro F1``: F1 per class from probabilities instead of hard counts."""

    def __init__(self, epsilon: float = 1e-7):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)
        truth = F.one_hot(target, logits.shape[-1]).to(probs.dtype)
        true_positive = (probs * truth).sum(dim=0)
        precision = true_positive / (probs.sum(dim=0) + self.epsilon)
        recall = true_positive / (truth.sum(dim=0) + self.epsilon)
        f1 = 2 * precision * recall / (precision + recall + self.epsilon)
        return 1 - f1.mean()


@LOSSES.register("symmetric_ce")
class SymmetricCrossEntropyLoss(nn.Module):
    """``alpha * CE + beta * reverse CE`` (Wang et al. 2019), robust to noisy labels.

    The reverse term is ``-sum p * log q`` with the one-hot target q clamped to ``log(1e-4)``.
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0):
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cross_entropy = F.cross_entropy(logits, target)
        probs = logits.softmax(dim=-1).clamp(min=1e-7, max=1.0)
        truth = F.one_hot(target, logits.shape[-1]).to(probs.dtype).clamp(min=1e-4, max=1.0)
        reverse = -(probs * truth.log()).sum(dim=-1).mean()
        return self.alpha * cross_entropy + self.beta * reverse


class WeightedSum(nn.Module):
    def __init__(self, parts: list[tuple[nn.Module, float]]):
        super().__init__()
        self.losses = nn.ModuleList(loss for loss, _ in parts)
        self.weights = [weight for _, weight in parts]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(weight * loss(logits, target) for loss, weight in zip(self.losses, self.weights, strict=True))


def create_loss(spec: str | Sequence[tuple[str, float, dict]], **kwargs) -> nn.Module:
    """A loss by name, or a weighted sum of ``(name, weight, kwargs)`` parts."""
    if isinstance(spec, str):
        return LOSSES.create(spec, **kwargs)
    return WeightedSum([(LOSSES.create(name, **(options or {})), weight) for name, weight, options in spec])


HEADS = {"single": ["class"], "multi": ["mask", "gender", "age"]}
HEAD_CLASSES = {"class": NUM_CLASSES, **HEAD_SIZES}
WEIGHTED_OPTION = "weight"


def head_class_weights(weight: Sequence[float] | dict, head: str, where: str = "weight") -> dict[str, list[float]]:
    """A loss's per-class ``weight`` for each head of the model, checked.

    One head: 18 values. Three heads: 18 values, which become each head's weights as the mean
    over the classes that share its value (class weight w[c] -> mask weight of m = mean of w over
    the 6 classes with mask m), or a mapping ``{mask: [3], gender: [2], age: [3]}`` (a head left out
    is unweighted). Raises a UserError naming ``where`` for a wrong length or an unknown head."""
    if isinstance(weight, dict):
        if head == "single":
            raise UserError(f"{where}: a mapping per head needs model.head=multi; one head takes {NUM_CLASSES} values")
        unknown = sorted(set(weight) - set(HEADS["multi"]))
        if unknown:
            raise UserError(f"{where}: unknown head {unknown[0]!r}; heads: {', '.join(HEADS['multi'])}")
        return {name: checked_weights(values, HEAD_CLASSES[name], f"{where}.{name}") for name, values in weight.items()}
    values = checked_weights(weight, NUM_CLASSES, where)
    if head == "single":
        return {"class": values}
    sums = head_marginals(np.asarray([values]))  # the 18 weights summed per value of each head
    return {name: (sums[name][0] * size / NUM_CLASSES).tolist() for name, size in HEAD_SIZES.items()}


def checked_weights(values, count: int, where: str) -> list[float]:
    if not isinstance(values, list | tuple) or len(values) != count:
        shown = len(values) if isinstance(values, list | tuple) else repr(values)
        raise UserError(f"{where}: expected {count} class weights, got {shown}")
    try:
        weights = [float(value) for value in values]
    except (TypeError, ValueError):
        raise UserError(f"{where}: class weights must be numbers, got {list(values)}") from None
    if any(not np.isfinite(value) or value < 0 for value in weights):
        raise UserError(f"{where}: class weights must be finite and >= 0, got {weights}")
    return weights


def head_loss_parts(parts: Sequence[tuple[str, float, dict]], head: str) -> dict[str, list[tuple[str, float, dict]]]:
    """The loss parts of each head: a part's per-class ``weight`` made to fit that head."""
    per_head: dict[str, list[tuple[str, float, dict]]] = {name: [] for name in HEADS[head]}
    for index, (name, weight, options) in enumerate(parts):
        options = dict(options or {})
        class_weights = options.pop(WEIGHTED_OPTION, None)
        where = f"loss[{index}].options.weight"
        fitted = head_class_weights(class_weights, head, where) if class_weights is not None else {}
        for head_name in per_head:
            extra = {WEIGHTED_OPTION: fitted[head_name]} if head_name in fitted else {}
            per_head[head_name].append((name, weight, {**options, **extra}))
    return per_head


class HeadLoss(nn.Module):
    """The loss of a single- or multi-head model on its targets: 18 classes (N,), or classes and
    exact ages (N, 2), which an ordinal, regression or distribution age head needs.

    ``parts`` are ``(name, weight, options)`` of :func:`create_loss`. For three heads, the targets
    are split into mask / gender / age and the head losses are summed with ``head_weights``; each
    head has its own loss, with per-class ``weight`` fitted to its classes (:func:`head_class_weights`),
    except an age head over exact ages, which has its own loss (``AgeHead.loss``).
    """

    def __init__(
        self,
        parts: Sequence[tuple[str, float, dict]],
        head: str = "single",
        head_weights: dict[str, float] | None = None,
        age: AgeHead | None = None,
        distill: float = 0.0,
    ):
        super().__init__()
        self.head = head
        self.distill = distill  # the teacher's share of the loss where targets carry its probabilities
        per_head = head_loss_parts(parts, head)
        self.weights = {name: (head_weights or {}).get(name, 1.0) for name in per_head}
        self.age_loss = (
            age.loss if age is not None and age.gives_estimate else None
        )  # the model's (regression: its scale)
        self.losses = nn.ModuleDict(
            {name: create_loss(spec) for name, spec in per_head.items() if not (name == "age" and self.age_loss)}
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        targets = head_targets(target, self.head)
        parts = split_head_logits(logits, self.head)
        total = sum(self.weights[name] * self.losses[name](parts[name], targets[name]) for name in self.losses)
        if self.age_loss is not None:
            total = total + self.weights["age"] * self.age_loss(parts["age"], target_ages(target))
        teacher = teacher_probabilities(target)
        if teacher is None or self.distill == 0:
            return total
        return (1 - self.distill) * total + self.distill * self.teacher_loss(parts, teacher)

    def teacher_loss(self, parts: dict[str, torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
        """Cross entropy of each class head against the teacher's probabilities summed to that head,
        over the photos the teacher labelled (an age head over years keeps its own loss only)."""
        labelled = ~teacher.isnan().any(dim=1)
        if not labelled.any():
            return parts[next(iter(parts))].sum() * 0  # keeps the graph; nothing to learn from
        soft = head_probabilities(teacher[labelled], self.head)
        return sum(
            self.weights[name] * soft_cross_entropy(parts[name][labelled], soft[name])
            for name in self.losses  # the class heads (an age head over years is not among them)
        )


def soft_cross_entropy(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """``-sum p log softmax(logits)``, the mean over rows: cross entropy against soft labels."""
    return -(probabilities * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


def head_probabilities(probabilities: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """18-class probabilities (N, 18) as the heads see them: themselves, or summed to mask, gender, age."""
    if head == "single":
        return {"class": probabilities}
    cube = probabilities.reshape(CLASS_CUBE)
    return {name: cube.sum(dim=axes) for name, axes in HEAD_AXES.items()}
