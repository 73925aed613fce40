"""The layer a class activation map is read from: by default the last spatial feature map of
the backbone (the output the global pool averages), found by running the model once, so that any
timm backbone works without a table of names; or a layer named by the user."""

from __future__ import annotations

import difflib
import weakref

import torch
from torch import nn

from maskcls.errors import UserError

AFTER_FEATURES = ("global_pool", "head", "fc", "classifier", "pre_logits")
"""timm's names for what comes after the feature map (pooling and the classifier)."""


def find_target_layer(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Module]:
    """(name, module) of the last module of ``model.backbone`` (or ``model``) whose output is a
    feature map (N, C, H, W) as wide as the features the pool averages (timm's ``num_features``),
    before the pooling and the classifier. A transformer's tokens are no such map: an error."""
    backbone = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    finished: list[str] = []
    channels = getattr(backbone, "num_features", None)  # what the pool averages: timm's feature width

    def noted(name: str):
        def hook(_module, _inputs, output) -> None:  # returns nothing: the output stays as it is
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[1] in (channels, None):
                finished.append(name)

        return hook

    handles = [
        module.register_forward_hook(noted(name))
        for name, module in backbone.named_modules()
        if name and name.split(".")[0] not in AFTER_FEATURES
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    if not finished or finished[-1].startswith("patch_embed"):  # a vision transformer: only its patches are a map
        raise UserError(f"{type(backbone).__name__}: no layer gives a feature map (N, C, H, W); name one with --layer")
    name = finished[-1]
    return prefix + name, backbone.get_submodule(name)


def named_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` (as ``model.named_modules()`` names it), or a one-line error with
    the closest names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UserError(f"layer {name!r} is not in the model{hint}")


FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> the layer :func:`find_target_layer` found in it: a model is searched once, not on
every batch or request."""


def target_layer(model: nn.Module, example: torch.Tensor, name: str | None = None) -> tuple[str, nn.Module]:
    """The layer named ``name``, else the one :func:`find_target_layer` finds (once per model)."""
    if name:
        return name, named_layer(model, name)
    if model not in FOUND:
        FOUND[model] = find_target_layer(model, example)
    return FOUND[model]
