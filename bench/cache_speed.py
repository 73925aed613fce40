"""The decoded-image cache against decoding every time.

    .venv/bin/python bench/cache_speed.py [--data demo-data] [--size 96x128]

Prints images/s for building the cache (decode + resize once, parallel processes), for reading
random batches of 64 from the memory map, and for plain per-image decode + resize on one core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskcls.data.cache import cached_images
from maskcls.data.layout import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("demo-data"))
    parser.add_argument("--size", default="96x128")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    paths = list(read_dataset(args.data).train["path"])
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        images = cached_images(args.data, paths, size, scratch)
        print(f"cache build {args.size}: {len(paths) / (time.perf_counter() - started):.0f} images/s")
        started = time.perf_counter()
        for _ in range(5):
            order = np.random.permutation(len(images))
            for k in range(0, len(order), 64):
                np.asarray(images[np.sort(order[k : k + 64])])
        print(f"random batches from the cache: {5 * len(images) / (time.perf_counter() - started):.0f} images/s")
    started = time.perf_counter()
    for relative in paths[:300]:
        np.asarray(Image.open(args.data / relative).convert("RGB").resize(size, Image.BILINEAR))
    print(f"decode + resize per image, one core: {300 / (time.perf_counter() - started):.0f} images/s")


if __name__ == "__main__":
    main()
