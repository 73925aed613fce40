"""A timm backbone with either one 18-class head or three heads (mask 3, gender 2, age 3).

Whatever the head, :meth:`FaceAttributeModel.class_probabilities` gives 18-class probabilities
(for three heads: the product of the head probabilities), so every later step sees the same.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from maskcls.errors import UserError
from maskcls.labels import HEAD_SIZES, NUM_CLASSES

HEADS = ("single", "multi")


class FaceAttributeModel(nn.Module):
    def __init__(self, backbone: nn.Module, features: int, head: str = "single", dropout: float = 0.0):
        super().__init__()
        if head not in HEADS:
            raise UserError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        self.backbone, self.head = backbone, head
        outputs = NUM_CLASSES if head == "single" else sum(HEAD_SIZES.values())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits: (N, 18) for one head, (N, 3 + 2 + 3) side by side for three."""
        return self.classifier(self.backbone(images))

    def head_logits(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_head_logits(logits, self.head)

    def class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.head == "single":
            return logits.float().softmax(dim=1)
        heads = {name: part.float().softmax(dim=1) for name, part in self.head_logits(logits).items()}
        joint = heads["mask"][:, :, None, None] * heads["gender"][:, None, :, None] * heads["age"][:, None, None, :]
        return joint.reshape(-1, NUM_CLASSES)  # index mask*6 + gender*3 + age


def split_head_logits(logits: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """``{"class": (N, 18)}`` for one head; ``{"mask": (N, 3), "gender": (N, 2), "age": (N, 3)}`` for three."""
    if head == "single":
        return {"class": logits}
    return dict(zip(HEAD_SIZES, logits.split(list(HEAD_SIZES.values()), dim=1), strict=True))


def head_targets(classes: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
    """18-class targets split the way :meth:`FaceAttributeModel.head_logits` splits logits."""
    if head == "single":
        return {"class": classes}
    return {"mask": classes // 6, "gender": classes // 3 % 2, "age": classes % 3}  # see labels.decode_class


def create_backbone(name: str, pretrained: bool = False, weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """A timm model without its classifier, and its feature size.

    ``pretrained`` downloads timm's weights (needs the internet); ``weights`` loads a local
    file instead (a state dict saved by ``torch.save``, or a .safetensors file).
    """
    import timm

    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise UserError(f"unknown timm model {name!r}{hint}; `timm.list_models('*name*')` lists them")
    try:
        backbone = timm.create_model(name, pretrained=pretrained and weights is None, num_classes=0)
    except (OSError, RuntimeError) as error:  # hub unreachable, no cached file
        raise UserError(
            f"cannot download pretrained weights for {name!r} ({type(error).__name__}). Offline? Save them where "
            f"there is internet (timm.create_model({name!r}, pretrained=True).state_dict() -> torch.save) and "
            "pass model.weights=FILE, or set model.pretrained=false"
        ) from None
    if weights is not None:
        load_weights(backbone, Path(weights))
    return backbone, backbone.num_features


def load_weights(backbone: nn.Module, path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {key.removeprefix("module."): value for key, value in state.items()}
    result = backbone.load_state_dict(state, strict=False)
    extra = [key for key in result.unexpected_keys if not key.startswith(("fc.", "classifier.", "head."))]
    if result.missing_keys or extra:
        missing = ", ".join(result.missing_keys[:3]) or "-"
        raise UserError(
            f"{path}: does not fit this backbone (missing {missing}; unexpected {', '.join(extra[:3]) or '-'})"
        )


def create_model(
    name: str, head: str = "single", pretrained: bool = False, weights: str | Path | None = None, dropout: float = 0.0
) -> FaceAttributeModel:
    backbone, features = create_backbone(name, pretrained, weights)
    return FaceAttributeModel(backbone, features, head, dropout)
