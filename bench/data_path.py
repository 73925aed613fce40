"""The training data path at GPU sizes, per CPU core: what one core delivers to the model.

    python bench/data_path.py [--sizes 224x224 384x512] [--batch 64] [--steps 12] [--threads 1]

For each input size, images/s of the path `maskcls train` runs before the forward pass:
1. read: a batch of random rows from the uint8 memory-map cache (what `data.cache: true` reads);
2. decode: the same batch decoded from 384x512 JPEGs and resized (what `data.cache: false` does);
3. + to float, augmentation `none` / `seed` / `strong`, cutmix_vertical (p=1), normalisation,
   channels_last: the batched augmentation of `data/transforms.py` on the CPU.
Torch runs on ``--threads`` threads (1: per core). The cache file is written to a temporary folder
first (its build is what `bench/cache_speed.py` measures). Prints JSON lines, then a table.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskcls.data.transforms import augment, normalize, to_float
from maskcls.training.mixing import maybe_mix

WARMUP = 2


def timed(function, steps: int, batch: int) -> float:
    """Images/s of ``function()`` (one batch), median over ``steps`` after a warm-up."""
    timings = []
    for index in range(steps + WARMUP):
        started = time.perf_counter()
        function()
        if index >= WARMUP:
            timings.append(time.perf_counter() - started)
    return batch / float(np.median(timings))


def photos(count: int) -> list[bytes]:
    """``count`` 384x512 JPEGs with smooth content (a face photo compresses like this, noise does not)."""
    rng = np.random.default_rng(0)
    made = []
    for _ in range(count):
        small = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((384, 512), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        made.append(buffer.getvalue())
    return made


def measure(size: tuple[int, int], batch: int, steps: int, folder: Path) -> dict:
    width, height = size
    count = batch * 6
    rng = np.random.default_rng(1)
    cache = np.lib.format.open_memmap(folder / f"c{width}x{height}.npy", "w+", np.uint8, (count, height, width, 3))
    for start in range(0, count, batch):
        cache[start : start + batch] = rng.integers(0, 256, (min(batch, count - start), height, width, 3), np.uint8)
    cache.flush()
    cache = np.load(folder / f"c{width}x{height}.npy", mmap_mode="r")
    jpegs = photos(batch)

    def read() -> torch.Tensor:
        return torch.from_numpy(np.asarray(cache[np.sort(rng.choice(count, batch, replace=False))]))

    def decode() -> torch.Tensor:
        decoded = []
        for data in jpegs:
            with Image.open(io.BytesIO(data)) as image:
                image.draft("RGB", size)
                decoded.append(np.asarray(image.convert("RGB").resize(size, Image.BILINEAR)))
        return torch.from_numpy(np.stack(decoded))

    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 18, (batch,))
    row = {"size": f"{width}x{height}", "read": timed(read, steps, batch), "decode": timed(decode, steps, batch)}
    for preset in ("none", "seed", "strong"):
        row[f"read+{preset}"] = timed(
            lambda preset=preset: finish(augment(to_float(read()), preset, generator)), steps, batch
        )
    mixing_rng = np.random.default_rng(2)

    def with_cutmix() -> torch.Tensor:
        images = augment(to_float(read()), "seed", generator)
        mixed = maybe_mix("cutmix_vertical", 1.0, images, targets, mixing_rng)
        return finish(mixed.images)

    row["read+seed+cutmix"] = timed(with_cutmix, steps, batch)
    return {key: round(value, 1) if isinstance(value, float) else value for key, value in row.items()}


def finish(batch: torch.Tensor) -> torch.Tensor:
    return normalize(batch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).contiguous(memory_format=torch.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["224x224", "384x512"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for text in args.sizes:
            width, height = (int(part) for part in text.split("x"))
            rows.append(measure((width, height), args.batch, args.steps, Path(folder)))
            print(json.dumps(rows[-1]), flush=True)
    columns = list(rows[0])
    print(f"\nimages/s on {args.threads} thread(s), batch {args.batch}")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")


if __name__ == "__main__":
    main()
