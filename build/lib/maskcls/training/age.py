"""Age heads: how the age part of a multi-head model's outputs is trained and read.

Every training image's exact age is known (it is in the profile folder's name), so the age head
need not be a 3-way softmax over <30 / 30-59 / 60+ that treats "29 vs 31" as an error as big as
"29 vs 75". ``model.age_head`` chooses:

- ``classes``: the 3-way softmax over age groups (the configured loss trains it).
- ``ordinal``: K-1 cumulative binary tasks over 1-year bins, "older than bin k", sharing one
  output g with a threshold per task (CORAL, Cao et al. 2020): P(age > bin k) = sigmoid(g - t_k).
  The thresholds are kept increasing (each is the previous plus a softplus), so the cumulative
  probabilities never cross (rank-consistent). (A first version had one output per task, CORN's
  conditional form; on a 4-epoch fine-tune its estimates shrank to the middle ages, MAE 8.4 years.)
- ``regression``: one output, the age in years on a normalised scale, trained with the negative
  log likelihood of a Laplace distribution whose scale is learned with it (an L1 loss that also
  fits the noise model); P(age group) comes from that Laplace distribution around the estimate.
- ``distribution``: a softmax over 1-year bins trained against a Gaussian around the true age
  (label-distribution learning, sigma ``DISTRIBUTION_SIGMA`` years); the estimate is its mean.

Every head yields the age-group probabilities (cut at the model's age borders) that the
18-class probabilities are made of; all but ``classes`` also give an age estimate in years.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from maskcls.ages import estimate_cuts
from maskcls.labels import AGE_BORDERS

AGE_HEADS = ("classes", "ordinal", "regression", "distribution")
AGE_MIN, AGE_MAX = 15, 80
"""The ages the bins cover; older and younger ages are clipped into the first or last bin."""
BINS = AGE_MAX - AGE_MIN + 1
AGE_CENTRE, AGE_SPREAD = 40.0, 15.0
"""``regression`` predicts ``(age - AGE_CENTRE) / AGE_SPREAD``."""
DISTRIBUTION_SIGMA = 2.0
INITIAL_LAPLACE_SCALE = 0.5  # in normalised units: 7.5 years


def age_output_count(kind: str) -> int:
    """How many model outputs an age head takes."""
    return {"classes": 3, "ordinal": 1, "regression": 1, "distribution": BINS}[kind]


def bin_index(ages: torch.Tensor) -> torch.Tensor:
    return (ages.long() - AGE_MIN).clamp(0, BINS - 1)


class AgeHead(nn.Module):
    """Reads (and trains) the age part of the outputs, ``logits`` (N, ``age_output_count(kind)``)."""

    def __init__(self, kind: str = "classes", borders: Sequence[int] = AGE_BORDERS):
        super().__init__()
        if kind not in AGE_HEADS:
            raise ValueError(f"unknown age head {kind!r}; known: {', '.join(AGE_HEADS)}")
        self.kind, self.borders = kind, tuple(int(border) for border in borders)
        ages = torch.arange(AGE_MIN, AGE_MAX + 1, dtype=torch.float32)
        self.register_buffer("bin_ages", ages, persistent=False)
        groups = torch.bucketize(ages, torch.tensor(self.borders, dtype=torch.float32), right=True)
        self.register_buffer("bin_groups", F.one_hot(groups, 3).float(), persistent=False)  # (BINS, 3)
        if kind == "regression":
            self.log_scale = nn.Parameter(torch.tensor(math.log(INITIAL_LAPLACE_SCALE)))
        if kind == "ordinal":  # t_0, then softplus^-1 of each step t_k - t_(k-1)
            self.first_threshold = nn.Parameter(torch.zeros(()))
            self.threshold_steps = nn.Parameter(torch.zeros(BINS - 2))
            self.initialise_from(None)

    @torch.no_grad()
    def initialise_from(self, ages: torch.Tensor | None = None) -> torch.Tensor:
        """Make a new head predict the age distribution of ``ages`` (the training people;
        uniform over the bins when None) whatever the image; returns the bias for the age outputs.

        A head over 66 bins starts far from the data otherwise, and its biases move slowly at a
        fine-tuning learning rate. ``ordinal``: thresholds at the log-odds of "older than bin k"
        (output bias 0); ``distribution``: the log frequency of each bin; ``regression``: the
        mean age; ``classes``: zero (the head's usual start)."""
        counts = torch.ones(BINS)
        if ages is not None:
            counts = torch.bincount(bin_index(torch.as_tensor(ages)), minlength=BINS).float() + 0.5
        if self.kind == "ordinal":
            older = counts.sum() - counts.cumsum(0)[:-1]  # people older than bin k
            thresholds = -torch.log(older / (counts.sum() - older))  # sigmoid(-t_k) = P(age > bin k)
            self.first_threshold.copy_(thresholds[0])
            self.threshold_steps.copy_(torch.log(torch.expm1(thresholds.diff())))  # softplus^-1
        if self.kind == "distribution":
            return torch.log(counts / counts.sum())
        if self.kind == "regression" and ages is not None:
            return ((torch.as_tensor(ages).float().mean() - AGE_CENTRE) / AGE_SPREAD).reshape(1)
        return torch.zeros(age_output_count(self.kind))

    def thresholds(self) -> torch.Tensor:
        """The ordinal head's increasing thresholds t_0 .. t_(K-2)."""
        steps = torch.cumsum(F.softplus(self.threshold_steps), dim=0)
        return torch.cat([self.first_threshold.reshape(1), self.first_threshold + steps])

    def ordinal_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K-1): the log-odds of "older than bin k"."""
        return logits.float()[:, :1] - self.thresholds()[None, :]

    @property
    def gives_estimate(self) -> bool:
        return self.kind != "classes"

    def bin_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """P(age = each 1-year bin), (N, BINS), for ``ordinal`` and ``distribution``."""
        if self.kind == "distribution":
            return logits.float().softmax(dim=1)
        above = torch.sigmoid(self.ordinal_logits(logits))  # P(age > bin k), k = 0..BINS-2, decreasing
        ones = torch.ones_like(above[:, :1])
        upper = torch.cat([ones, above], dim=1)  # P(age > bin k - 1)
        lower = torch.cat([above, torch.zeros_like(ones)], dim=1)  # P(age > bin k)
        return (upper - lower).clamp(min=0)

    def group_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """P(<border 1), P(between), P(>= border 2): (N, 3)."""
        if self.kind == "classes":
            return logits.float().softmax(dim=1)
        if self.kind == "regression":
            return laplace_group_probabilities(self.estimate(logits), self.borders, self.scale_years())
        return self.bin_probabilities(logits) @ self.bin_groups

    def estimate(self, logits: torch.Tensor) -> torch.Tensor:
        """The age in years, (N,); only for heads that give one."""
        if self.kind == "regression":
            return AGE_CENTRE + AGE_SPREAD * logits.float()[:, 0]
        if self.kind == "classes":
            raise ValueError("the classes age head gives no age estimate")
        return self.bin_probabilities(logits) @ self.bin_ages

    def scale_years(self) -> torch.Tensor:
        return AGE_SPREAD * self.log_scale.exp()

    def loss(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """The loss of the ``ordinal``, ``regression`` or ``distribution`` head against exact ages."""
        logits = logits.float()
        if self.kind == "regression":
            target = (ages.float() - AGE_CENTRE) / AGE_SPREAD
            return ((target - logits[:, 0]).abs() / self.log_scale.exp() + self.log_scale).mean()
        if self.kind == "distribution":  # ages clipped into the bins, as the ordinal head's are (a Gaussian
            clipped = ages.float().clamp(AGE_MIN, AGE_MAX)  # around 110 underflows to 0 / 0 on every bin)
            soft = torch.exp(-0.5 * ((self.bin_ages[None, :] - clipped[:, None]) / DISTRIBUTION_SIGMA) ** 2)
            soft = soft / soft.sum(dim=1, keepdim=True)
            return -(soft * logits.log_softmax(dim=1)).sum(dim=1).mean()
        if self.kind == "ordinal":
            return coral_loss(self.ordinal_logits(logits), bin_index(ages))
        raise ValueError("the classes age head is trained by the configured loss")


def coral_loss(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy of every task k ("older than bin k") for every image, averaged."""
    tasks = torch.arange(logits.shape[1], device=logits.device)
    above = (bins[:, None] > tasks[None, :]).float()
    return F.binary_cross_entropy_with_logits(logits, above)


def laplace_cdf(x: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    z = (x - centre) / scale
    return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))


def laplace_group_probabilities(estimates: torch.Tensor, borders: Sequence[float], scale: torch.Tensor) -> torch.Tensor:
    """:func:`maskcls.ages.laplace_group_probabilities` in torch (differentiable in the estimates
    and the scale): the same arguments, the same cut of a continuous age at ``border - 0.5``."""
    young, old = (laplace_cdf(torch.as_tensor(cut), estimates, scale) for cut in estimate_cuts(borders))
    return torch.stack([young, old - young, 1 - old], dim=1)
