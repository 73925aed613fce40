"""Training speed on this machine: the three figures of the training issue.

    .venv/bin/python bench/train_speed.py [--data demo-data] [--part pipeline|options|overhead|all]

- pipeline: `maskcls train` (cpu-demo recipe; its model and a tiny one at 96x128) with the
  decoded-image cache against decoding and resizing every image again every epoch
  (`data.cache: false`): images/s and epoch time.
- options: images/s of training steps with and without channels_last and bf16 autocast, for
  the demo model (resnet10t at 48x64) and resnet18 at 128x96.
- pretrained: images/s of training steps for the pretrained recipe's backbone
  (tf_efficientnet_lite0) at several sizes, fp32, with and without channels_last.
- overhead: `fit()` wall time against a bare PyTorch loop over the same model, the same cached
  batches and the same number of epochs (train steps plus one validation pass per epoch); the
  difference is what logging, metrics, checkpoints and figures cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskcls.config import load_config
from maskcls.data.transforms import augment, normalize, to_float
from maskcls.training.engine import StepSettings, batches, train_one_epoch
from maskcls.training.losses import HeadLoss
from maskcls.training.models import create_model
from maskcls.training.prepare import prepare_data
from maskcls.training.train import fit

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "cpu-demo.yaml"


def demo_config(data: Path, scratch: str, *overrides: str):
    return load_config(RECIPE, [f"data.root={data}", f"train.cache_dir={scratch}/cache", *overrides])


def pipeline(data: Path, scratch: str) -> None:
    print(f"## cached vs per-epoch decode ({data}, 2 epochs; cache build not counted)")
    for model, size in (("resnet10t", "[48,64]"), ("test_resnet", "[96,128]")):
        for cache in (True, False):
            settings = [f"model.name={model}", f"train.image_size={size}", f"data.cache={str(cache).lower()}"]
            run = fit(demo_config(data, scratch, "train.epochs=2", *settings), runs_dir=f"{scratch}/runs").folder
            summary = pd.read_csv(run / "summary.csv")
            print(
                f"{model}@{size} data.cache={cache!s:5}  train {summary['train_images_per_second'].mean():6.0f} "
                f"images/s  epoch {summary['seconds'].mean():6.1f} s"
            )
    for cache in (True, False):
        config = demo_config(data, scratch, "train.image_size=[96,128]", f"data.cache={str(cache).lower()}")
        prepared = prepare_data(config, f"{scratch}/runs")
        for augmentation in ("none", "seed"):
            speed = input_speed(prepared, augmentation)
            print(
                f"input pipeline alone (96x128, batches of 64, augmentation {augmentation}, no model) "
                f"data.cache={cache!s:5}  {speed:6.0f} images/s"
            )


def input_speed(prepared, augmentation: str) -> float:
    """What a fast accelerator would be fed: batches plus augmentation, without the model."""
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for images, _ in batches(prepared.images, prepared.train_labels, prepared.train_rows, 64, generator):
        augment(to_float(images), augmentation, generator)
    return len(prepared.train_rows) / (time.perf_counter() - started)


def options(data: Path, scratch: str, steps: int = 5) -> None:
    print(f"## CPU options: training images/s over {steps} batches of 64 (after 2 warm-up batches)")
    for model_name, size in (("resnet10t", (48, 64)), ("resnet18", (96, 128))):
        config = demo_config(data, scratch, f"train.image_size=[{size[0]},{size[1]}]")
        prepared = prepare_data(config, f"{scratch}/runs")
        for channels_last in (False, True):
            for amp in (None, torch.bfloat16):
                speed = step_speed(prepared, model_name, channels_last, amp, steps)
                label = f"{model_name}@{size[0]}x{size[1]} channels_last={channels_last!s:5} bf16={amp is not None!s:5}"
                print(f"{label}  {speed:6.1f} images/s")


def pretrained(data: Path, scratch: str, steps: int = 5) -> None:
    print(f"## pretrained recipe: tf_efficientnet_lite0 training images/s over {steps} batches of 64, fp32")
    for width, height in ((48, 64), (72, 96), (96, 128), (120, 160)):
        config = demo_config(data, scratch, f"train.image_size=[{width},{height}]")
        prepared = prepare_data(config, f"{scratch}/runs")
        for channels_last in (False, True):
            speed = step_speed(prepared, "tf_efficientnet_lite0", channels_last, None, steps)
            print(f"tf_efficientnet_lite0@{width}x{height} channels_last={channels_last!s:5}  {speed:6.1f} images/s")


def step_speed(prepared, model_name: str, channels_last: bool, amp, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, "multi", pretrained=False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    settings = StepSettings(amp_dtype=amp, channels_last=channels_last)
    criterion = HeadLoss([("cross_entropy", 1.0, {})], "multi")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    rows = prepared.train_rows[: 64 * (steps + 2)]
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    timings = []

    def on_batch(count: int) -> None:
        timings.append((time.perf_counter(), count))

    timings.append((time.perf_counter(), 0))
    train_one_epoch(
        model, batches(prepared.images, prepared.train_labels, rows, 64), criterion=criterion, optimizer=optimizer,
        scheduler=scheduler, settings=settings, augmentation="seed", generator=generator, rng=rng, on_batch=on_batch,
    )  # fmt: skip
    (start, _), *_, (end, _) = timings[2:]
    return sum(count for _, count in timings[3:]) / (end - start)


def overhead(data: Path, scratch: str, epochs: int = 3) -> None:
    print(f"## overhead: fit() against a bare loop (cpu-demo model, {epochs} epochs, no augmentation)")
    config = demo_config(data, scratch, f"train.epochs={epochs}", "train.augmentation=none")
    prepared = prepare_data(config, f"{scratch}/runs")  # builds the cache both use
    started = time.perf_counter()
    fit(config, runs_dir=f"{scratch}/runs")
    fit_seconds = time.perf_counter() - started
    bare_seconds = bare_loop(config, prepared, epochs)
    images = epochs * len(prepared.train_rows)
    print(f"fit():     {fit_seconds:6.1f} s  ({images / fit_seconds:5.0f} train images/s, all included)")
    print(f"bare loop: {bare_seconds:6.1f} s  ({images / bare_seconds:5.0f} train images/s)")
    print(f"fit / bare speed: {bare_seconds / fit_seconds:.3f}x")


def bare_loop(config, prepared, epochs: int) -> float:
    """The plainest training loop over the same cached uint8 batches: no metrics, no logging."""
    started = time.perf_counter()
    torch.manual_seed(0)
    model = create_model(config.model.name, config.model.head, pretrained=False).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    criterion = HeadLoss([("cross_entropy", 1.0, {})], config.model.head)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    generator = torch.Generator().manual_seed(0)

    def tensors(images):
        return normalize(to_float(images), mean, std).contiguous(memory_format=torch.channels_last)

    for _ in range(epochs):
        model.train()
        for images, labels in batches(
            prepared.images, prepared.train_labels, prepared.train_rows, config.train.batch_size, generator
        ):
            loss = criterion(model(tensors(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for images, _ in batches(
                prepared.images, prepared.true_labels, prepared.valid_rows, 2 * config.train.batch_size
            ):
                model.class_probabilities(model(tensors(images)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("demo-data"))
    parser.add_argument("--part", choices=["pipeline", "options", "pretrained", "overhead", "all"], default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        parts = (("pipeline", pipeline), ("options", options), ("pretrained", pretrained), ("overhead", overhead))
        for name, part in parts:
            if args.part in (name, "all"):
                part(args.data, scratch)


if __name__ == "__main__":
    main()
