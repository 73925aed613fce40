"""Grad-CAM from three libraries on one trained run: time per image per head, and how alike the
maps are (so the choice of library is measured, not guessed).

    .venv/bin/python bench/cam_libraries.py RUN DATA [--images 64] [--threads 2]

pytorch-grad-cam (``grad-cam``), captum (``LayerGradCam``) and torchcam (``GradCAM``), each on the
same layer (the last spatial feature map, found as maskcls.explain does), the same photos (the
first N of the run's data, at the run's size), the predicted class of each head. Needs the three
libraries installed (``pip install grad-cam captum torchcam``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from maskcls.cam.layers import find_target_layer
from maskcls.data.cache import cached_images
from maskcls.data.layout import read_dataset
from maskcls.inference.loading import load_run
from maskcls.labels import HEAD_SIZES
from maskcls.training.engine import finish, prepare


def head_slices(model) -> dict[str, slice]:
    start, found = 0, {}
    for name, size in HEAD_SIZES.items():
        count = size if name != "age" else model.classifier[1].out_features - start
        found[name] = slice(start, start + count)
        start += count
    return found


def with_grad_cam(model, layer, batch, head: slice, classes):
    from pytorch_grad_cam import GradCAM

    class HeadTarget:
        def __init__(self, index):
            self.index = index

        def __call__(self, output):
            return output[..., head][..., self.index] if output.ndim == 1 else output[:, head][:, self.index]

    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=batch, targets=[HeadTarget(int(k)) for k in classes])


def with_captum(model, layer, batch, head: slice, classes):
    from captum.attr import LayerAttribution, LayerGradCam

    explainer = LayerGradCam(lambda x: model(x)[:, head], layer)
    maps = explainer.attribute(batch, target=torch.as_tensor(classes), relu_attributions=True)
    maps = LayerAttribution.interpolate(maps, tuple(batch.shape[-2:]), "bilinear")[:, 0]
    return scaled(maps.detach().numpy())


def with_torchcam(model, layer, batch, head: slice, classes):
    from torchcam.methods import GradCAM

    name = next(name for name, module in model.named_modules() if module is layer)
    with GradCAM(model, target_layer=name) as extractor:
        scores = model(batch)[:, head]
        maps = extractor(list(map(int, classes)), scores)[0]
    maps = torch.nn.functional.interpolate(maps[:, None], tuple(batch.shape[-2:]), mode="bilinear")[:, 0]
    return scaled(maps.detach().numpy())


def scaled(maps: np.ndarray) -> np.ndarray:
    low = maps.reshape(len(maps), -1).min(1)[:, None, None]
    high = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return (maps - low) / np.maximum(high - low, 1e-7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    loaded = load_run(options.run, "cpu")
    model = loaded.model.float().to(memory_format=torch.contiguous_format)
    table = read_dataset(options.data).train.head(options.images)
    images = cached_images(options.data, table["path"].tolist(), loaded.image_size, options.run.parent / "cache-bench")
    batch = finish(prepare(torch.from_numpy(np.array(images)), loaded.settings), loaded.settings).contiguous()
    layer_name, layer = find_target_layer(model, batch[:1])
    print(f"{options.run}: {loaded.config.model.name} at {loaded.image_size}, layer {layer_name}, {len(batch)} images")
    with torch.no_grad():
        logits = model(batch)
    results = {}
    for head, part in head_slices(model).items():
        classes = logits[:, part].argmax(1).numpy()
        for label, method in (("grad-cam", with_grad_cam), ("captum", with_captum), ("torchcam", with_torchcam)):
            method(model, layer, batch[:2], part, classes[:2])  # warm-up
            started = time.perf_counter()
            maps = method(model, layer, batch, part, classes)
            seconds = time.perf_counter() - started
            results[(head, label)] = maps
            print(f"  {head:6} {label:9} {seconds / len(batch) * 1000:6.1f} ms per image")
        base = results[(head, "grad-cam")].reshape(len(batch), -1)
        for label in ("captum", "torchcam"):
            other = results[(head, label)].reshape(len(batch), -1)
            agree = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(base, other, strict=True) if a.std() and b.std()])
            print(f"  {head:6} grad-cam vs {label}: mean correlation of the maps {agree:.3f}")


if __name__ == "__main__":
    main()
