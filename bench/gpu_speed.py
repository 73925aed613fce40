"""Training throughput on a GPU (runs on a CPU too, for checking the script): one table.

    python bench/gpu_speed.py [--device cuda] [--size 224] [--batch 128] [--steps 20]
        [--models resnet50 tf_efficientnet_b0] [--ddp]
    python bench/gpu_speed.py --recipes [--steps 20]     # configs/gpu-*.yaml: train and predict steps

For each model: images/s of full training steps (forward, loss, backward, AdamW step) in fp32,
bf16 and fp16 autocast (fp16 with a GradScaler), each with and without channels_last, on random
data already on the device; then the input pipeline feeding the best of them: a cached uint8
memory map (what `maskcls train` reads) against decoding and resizing JPEGs every step
(`data.cache: false`), in images/s of the loader alone. `--ddp` also runs the best setting under
torchrun-style DDP on every visible GPU (one process each, NCCL) and reports the global images/s.
Prints JSON lines, then a markdown table. Timings skip the first 3 steps (warm-up, autotuning).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskcls.training.engine import StepSettings, amp_dtype, forward_outputs
from maskcls.training.losses import HeadLoss
from maskcls.training.models import create_model

WARMUP = 3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_speed(
    name: str, device: torch.device, size, batch: int, steps: int, amp: str, channels_last: bool, age_head="classes"
):
    """Images/s of training steps on random data already on the device; ``size`` is a side or (width, height)."""
    torch.manual_seed(0)
    width, height = (size, size) if isinstance(size, int) else size
    model = create_model(name, "multi", age_head=age_head).to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = amp_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    images = torch.randn(batch, 3, height, width, device=device).contiguous(memory_format=memory)
    targets = torch.stack([torch.randint(0, 18, (batch,)), torch.randint(18, 76, (batch,))], dim=1).to(device)
    criterion = HeadLoss([("cross_entropy", 1.0, {})], "multi", age=model.age)
    timings = []
    for index in range(steps + WARMUP):
        synchronize(device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)
        loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        synchronize(device)
        if index >= WARMUP:
            timings.append(time.perf_counter() - started)
    return batch / float(np.median(timings))


@torch.no_grad()
def predict_speed(name: str, device: torch.device, size, batch: int, steps: int, amp: str, age_head: str) -> float:
    """Images/s of prediction (forward, the 18 probabilities and the age estimate) with flip TTA."""
    width, height = size
    model = create_model(name, "multi", age_head=age_head).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    settings = StepSettings(
        device=device, amp_dtype=amp_dtype(amp, device), channels_last=True, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    images = torch.rand(batch, 3, height, width, device=device).contiguous(memory_format=torch.channels_last)
    timings = []
    for index in range(steps + WARMUP):
        synchronize(device)
        started = time.perf_counter()
        forward_outputs(model, images, settings, tta_flip=True)
        synchronize(device)
        if index >= WARMUP:
            timings.append(time.perf_counter() - started)
    return batch / float(np.median(timings))


def recipe_speeds(device: torch.device, steps: int) -> list[dict]:
    """Train and predict images/s of every configs/gpu-*.yaml at its own size, batch and precision
    (and in fp32, to show what the mixed precision is worth)."""
    from maskcls.config import load_config

    rows = []
    for recipe in sorted((Path(__file__).parents[1] / "configs").glob("gpu-*.yaml")):
        config = load_config(recipe)
        model, train = config.model, config.train
        batch = train.batch_size if device.type == "cuda" else 2  # on a CPU: a check of the script, not a figure
        for amp in dict.fromkeys([train.amp, "none"]):
            row = {
                "recipe": recipe.stem, "model": model.name, "size": "x".join(map(str, train.image_size)),
                "batch": batch, "amp": amp,
                "train_images_per_s": round(step_speed(
                    model.name, device, tuple(train.image_size), batch, steps, amp, train.channels_last,
                    model.age_head,
                ), 1),
                "predict_flip_images_per_s": round(predict_speed(
                    model.name, device, tuple(train.image_size), 2 * batch, steps, amp, model.age_head
                ), 1),
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def loader_speed(size: int, batch: int, steps: int, cached: bool) -> float:
    """Images/s of producing uint8 batches: from a memory map, or by decoding JPEGs of 384x512."""
    rng = np.random.default_rng(0)
    count = batch * 4
    with tempfile.TemporaryDirectory() as folder:
        if cached:
            array = np.lib.format.open_memmap(Path(folder) / "c.npy", "w+", np.uint8, (count, size, size, 3))
            array[:] = rng.integers(0, 256, array.shape, dtype=np.uint8)
            array.flush()
            started = time.perf_counter()
            for _ in range(steps):
                order = rng.integers(0, count, batch)
                torch.from_numpy(np.asarray(array[np.sort(order)]))
            return batch * steps / (time.perf_counter() - started)
        photos = []
        for _ in range(count):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (512, 384, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
            photos.append(buffer.getvalue())
        started = time.perf_counter()
        for _ in range(steps):
            batch_photos = [photos[k] for k in rng.integers(0, count, batch)]
            decoded = [np.asarray(Image.open(io.BytesIO(p)).convert("RGB").resize((size, size))) for p in batch_photos]
            torch.from_numpy(np.stack(decoded))
        return batch * steps / (time.perf_counter() - started)


def ddp_speed(args, amp: str, channels_last: bool) -> float | None:
    """Global images/s with one process per GPU (torch.multiprocessing, NCCL)."""
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return None
    import torch.multiprocessing as mp

    results = mp.get_context("spawn").Manager().dict()
    mp.spawn(ddp_worker, args=(gpus, args, amp, channels_last, results), nprocs=gpus, join=True)
    return sum(results.values())


def ddp_worker(rank: int, world: int, args, amp: str, channels_last: bool, results) -> None:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    model = create_model(args.models[0], "multi").to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = torch.nn.parallel.DistributedDataParallel(model.to(memory_format=memory), device_ids=[rank])
    criterion = HeadLoss([("cross_entropy", 1.0, {})], "multi")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = amp_dtype(amp, device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=memory)
    targets = torch.randint(0, 18, (args.batch,), device=device)
    timings = []
    for index in range(args.steps + WARMUP):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = criterion(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        if index >= WARMUP:
            timings.append(time.perf_counter() - started)
    results[rank] = args.batch / float(np.median(timings))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["resnet50", "tf_efficientnet_b0"])
    parser.add_argument("--ddp", action="store_true")
    parser.add_argument("--recipes", action="store_true", help="only the configs/gpu-*.yaml recipes' steps")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(json.dumps({"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__}), flush=True)
    if args.recipes:
        rows = recipe_speeds(device, args.steps)
        print(f"\nconfigs/gpu-*.yaml on {device}")
        print(
            "| recipe | size | batch | amp | train images/s | predict (flip TTA) images/s |\n|---|---|---|---|---|---|"
        )
        for row in rows:
            cells = [row["recipe"], row["size"], row["batch"], row["amp"], row["train_images_per_s"],
                     row["predict_flip_images_per_s"]]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |")
        return
    rows = []
    for name in args.models:
        for amp in ("none", "bf16", "fp16"):
            if amp == "fp16" and device.type != "cuda":
                continue  # fp16 autocast is a GPU feature (amp_dtype runs it as fp32 on a CPU)
            for channels_last in (False, True):
                speed = step_speed(name, device, args.size, args.batch, args.steps, amp, channels_last)
                row = {"model": name, "amp": amp, "channels_last": channels_last, "images_per_s": round(speed, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    pipeline = {
        cached: round(loader_speed(args.size, args.batch, max(args.steps // 2, 2), cached), 1)
        for cached in (True, False)
    }
    print(json.dumps({"loader_cached_images_per_s": pipeline[True], "loader_decode_images_per_s": pipeline[False]}))
    best = max(rows, key=lambda row: row["images_per_s"])
    if args.ddp and device.type == "cuda":
        print(json.dumps({"ddp_global_images_per_s": ddp_speed(args, best["amp"], best["channels_last"])}))
    print(f"\n{args.size}x{args.size}, batch {args.batch}, {device}")
    print("| model | amp | channels_last | images/s |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['amp']} | {row['channels_last']} | {row['images_per_s']} |")
    print(f"| input: cached uint8 memmap | | | {pipeline[True]} |")
    print(f"| input: decode JPEG 384x512 + resize | | | {pipeline[False]} |")


if __name__ == "__main__":
    main()
