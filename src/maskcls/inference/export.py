"""ONNX export of a run's best model, with the preprocessing inside the graph.

The exported graph takes what the cache holds, ``images``: uint8 (N, H, W, 3) RGB at the run's
image size, and returns ``probabilities``: float (N, 18), or (N, 19) with the age estimate in
years last for a model whose age head gives one (:meth:`FaceAttributeModel.outputs`). Scaling to [0, 1], the dataset's
mean/std normalisation and the combination of multi-head outputs into 18 classes are all part
of the graph, so a caller (``predict --backend onnxruntime``, ``serve``) only resizes.

With a calibration (``maskcls calibrate``'s learned age borders and class biases) the graph also
applies it, for deployment elsewhere: such a file is written beside ``model.onnx`` (default
``model-calibrated.onnx``), never over it, since predict applies calibration itself.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from maskcls.errors import UserError
from maskcls.evaluation.calibrate import EPSILON, Calibration, calibration_for
from maskcls.files import atomic_path
from maskcls.inference.loading import load_run
from maskcls.labels import NUM_CLASSES
from maskcls.rundir import names
from maskcls.training.age import laplace_group_probabilities

OPSET = 18
CALIBRATED_ONNX = "model-calibrated.onnx"


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


class CalibratedOutputs(nn.Module):
    """The torch twin of :func:`maskcls.evaluation.calibrate.apply_calibration` on a model's
    outputs: the age part from the estimate cut at the learned borders (Laplace noise of the
    learned scale), then softmax(log p + biases); the age estimate column passes through."""

    def __init__(self, calibration: Calibration):
        super().__init__()
        self.register_buffer("biases", torch.tensor(calibration.biases, dtype=torch.float32))
        self.age_borders = calibration.age_borders

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        probabilities, rest = outputs[:, :NUM_CLASSES], outputs[:, NUM_CLASSES:]
        if self.age_borders is not None:
            scale = torch.tensor(self.age_borders.scale, dtype=outputs.dtype)
            groups = laplace_group_probabilities(rest[:, 0], self.age_borders.borders, scale)
            mask_gender = probabilities.reshape(-1, 6, 3).sum(dim=2)
            probabilities = (mask_gender[:, :, None] * groups[:, None, :]).reshape(-1, NUM_CLASSES)
        calibrated = torch.softmax(torch.log(probabilities.clamp(min=EPSILON)) + self.biases, dim=1)
        return torch.cat([calibrated, rest], dim=1)


def export_onnx(run: str | Path, out: str | Path | None = None, calibration: str | Path | None = None) -> Path:
    """Write ``run``'s best model as ONNX (default ``RUN/model.onnx``); returns the path.
    ``calibration``: a calibration.json to apply inside the graph, or ``"auto"`` for the run's
    own or its cv group's (default out: ``RUN/model-calibrated.onnx``)."""
    run = Path(run)
    adjustments = None
    if calibration is not None:
        group_file = run.parent / names.CALIBRATION
        source = run.parent if str(calibration) == "auto" and group_file.exists() else run
        adjustments = calibration_for([source], calibration)
        if adjustments is None:
            raise UserError(f"{run}: no calibration.json here or in its cv group (make one with maskcls calibrate)")
    out = Path(out) if out else run / (CALIBRATED_ONNX if adjustments is not None else names.ONNX_MODEL)
    loaded = load_run(run, device="cpu")
    if adjustments is not None and adjustments.age_borders is not None and not loaded.model.age.gives_estimate:
        raise UserError(f"{adjustments.source}: it cuts an age estimate, but {run}'s model gives none")
    model = loaded.model.to(memory_format=torch.contiguous_format).float()
    wrapper = ExportedModel(model, loaded.settings.mean, loaded.settings.std)
    if adjustments is not None:
        wrapper = nn.Sequential(wrapper, CalibratedOutputs(adjustments))
    wrapper = wrapper.eval()
    width, height = loaded.image_size
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as temporary, contextlib.redirect_stdout(io.StringIO()):  # the exporter's chatter
        try:
            torch.onnx.export(
                wrapper, (example,), str(temporary), input_names=["images"], output_names=["probabilities"],
                dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True, external_data=False,
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
