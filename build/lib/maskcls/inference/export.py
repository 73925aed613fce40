"""ONNX export of a run's best model, with the preprocessing inside the graph.

The exported graph takes what the cache holds, ``images``: uint8 (N, H, W, 3) RGB at the run's
image size, and returns ``probabilities``: float (N, 18), or (N, 19) with the age estimate in
years last for a model whose age head gives one (:meth:`FaceAttributeModel.outputs`). Scaling to [0, 1], the dataset's
mean/std normalisation and the combination of multi-head outputs into 18 classes are all part
of the graph, so a caller (``predict --backend onnxruntime``, ``serve``) only resizes.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from maskcls.errors import UserError
from maskcls.files import atomic_path
from maskcls.inference.loading import load_run
from maskcls.rundir import names

OPSET = 18


class ExportedModel(nn.Module):
    """uint8 NHWC images -> 18-class probabilities (and the age estimate)."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.permute(0, 3, 1, 2).float() / 255.0
        return self.model.outputs(self.model((batch - self.mean) / self.std))


def export_onnx(run: str | Path, out: str | Path | None = None) -> Path:
    """Write ``run``'s best model as ONNX (default ``RUN/model.onnx``); returns the path."""
    run = Path(run)
    out = Path(out) if out else run / names.ONNX_MODEL
    loaded = load_run(run, device="cpu")
    model = loaded.model.to(memory_format=torch.contiguous_format).float()
    wrapper = ExportedModel(model, loaded.settings.mean, loaded.settings.std).eval()
    width, height = loaded.image_size
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as temporary, contextlib.redirect_stdout(io.StringIO()):  # the exporter's chatter
        try:
            torch.onnx.export(
                wrapper, (example,), str(temporary), input_names=["images"], output_names=["probabilities"],
                dynamic_shapes={"images": {0: batch}}, opset_version=OPSET, dynamo=True, external_data=False,
            )  # fmt: skip
        except Exception as error:  # the exporter raises many types; the model name says what failed
            raise UserError(f"{run}: ONNX export of {loaded.config.model.name!r} failed ({error})") from None
    return out


def onnx_session(path: str | Path):
    """An onnxruntime CPU session using every core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
