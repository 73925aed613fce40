"""An int8 copy of a run's ONNX model: onnxruntime's static quantization (weights per channel in
int8, activations in uint8, QDQ format), calibrated on the run's own training photos, written as
``RUN/model-int8.onnx``. ``predict --backend int8`` and ``serve --backend int8`` run it; it is
never chosen by ``auto``, since its probabilities differ from the model's (see the README for how
much, and what it does to macro F1)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from maskcls.data.cache import load_resized
from maskcls.data.layout import read_dataset
from maskcls.errors import UserError
from maskcls.files import atomic_path, read_json
from maskcls.inference.export import export_onnx
from maskcls.rundir import names

INT8_MODEL = "model-int8.onnx"
CALIBRATION_PHOTOS = 256
CALIBRATION_BATCH = 16


def quantize_run(run: str | Path, *, photos: int = CALIBRATION_PHOTOS, out: str | Path | None = None) -> Path:
    """Write ``run``'s model as int8 ONNX (default ``RUN/model-int8.onnx``), its activation ranges
    measured on ``photos`` training photos spread evenly over the run's data; returns the path."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    run = Path(run)
    if photos < 1:
        raise UserError(f"photos must be at least 1, got {photos}")
    model = run / names.ONNX_MODEL
    if not model.exists():
        export_onnx(run, model)
    images = calibration_images(run, photos)

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                {"images": images[start : start + CALIBRATION_BATCH]}
                for start in range(0, len(images), CALIBRATION_BATCH)
            )

        def get_next(self):
            return next(self.batches, None)

    out = Path(out) if out is not None else run / INT8_MODEL
    with tempfile.TemporaryDirectory() as scratch, atomic_path(out) as temporary:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared))  # shapes inferred and the graph folded, as recommended
        quantize_static(
            str(prepared), str(temporary), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=output_nodes(prepared),
        )  # fmt: skip
    return out


def output_nodes(model_path: Path) -> list[str]:
    """The nodes after the classifier's last matrix product (softmaxes, the product of the heads'
    probabilities, the age estimate): they stay float, so that small probabilities keep their
    resolution (quantized, every probability is a multiple of 1/255 and a row no longer sums to 1)."""
    import onnx

    nodes = onnx.load(str(model_path)).graph.node
    last = max((index for index, node in enumerate(nodes) if node.op_type in ("Gemm", "MatMul")), default=-1)
    return [node.name for node in nodes[last + 1 :]]


def calibration_images(run: Path, count: int) -> np.ndarray:
    """``count`` training photos of the run's data (every k-th), at the run's size, uint8 NHWC."""
    config = read_json(run / names.CONFIG)  # the data and the size; no need to load the model
    root, size = Path(config["data"]["root"]), tuple(config["train"]["image_size"])
    if not root.is_dir():
        raise UserError(f"{root}: the run's training photos are not here; int8 calibration reads some of them")
    paths = read_dataset(root, strict=False).train["path"].tolist()
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))
    return np.stack([load_resized(root / paths[index], size) for index in chosen])


def int8_model(run: Path) -> Path:
    """``RUN/model-int8.onnx``, quantized first when missing."""
    path = run / INT8_MODEL
    return path if path.exists() else quantize_run(run)
