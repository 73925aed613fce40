"""Decode and resize each image once: a uint8 array on disk, memory-mapped, shared by epochs.

Decoding 384x512 JPEGs every epoch is the bottleneck of CPU training (a few hundred images/s
here); a cached array serves tens of thousands per second. The cache file is keyed by a
fingerprint of the image set (relative paths, sizes, modification times) and the target size,
so a changed dataset never reuses a stale cache. Written to a temp file and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from PIL import Image

from maskcls.callbacks import Progress
from maskcls.errors import DataError, UserError
from maskcls.files import atomic_path

log = logging.getLogger("maskcls")

CACHE_VERSION = 1
CHUNK = 64
ROOM_TO_SPARE = 256 * 2**20  # left free on the cache's disk besides the cache itself


def cache_fingerprint(root: Path, paths: Sequence[str], size: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{size[0]}x{size[1]}".encode())
    for relative in paths:
        try:
            stat = (root / relative).stat()
        except FileNotFoundError:
            raise DataError(f"{relative}: image not found") from None
        digest.update(f"\n{relative}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached_images(
    root: str | Path,
    paths: Sequence[str],
    size: tuple[int, int],
    cache_dir: str | Path,
    workers: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Images of ``paths`` (relative to ``root``) as an (N, H, W, 3) uint8 memory map, in order.

    ``size`` is (width, height). Built on first use with ``workers`` processes, then reused.
    Before a build, the size it will take is logged, and a disk without room for it is a
    UserError before any work. The build holds a few chunks of images at a time, whatever N."""
    root = Path(root)
    target = Path(cache_dir) / f"images-{size[0]}x{size[1]}-{cache_fingerprint(root, paths, size)}.npy"
    shape = (len(paths), size[1], size[0], 3)
    if target.exists():
        cached = open_cache(target, shape)
        if cached is not None:
            return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    needed = int(np.prod(shape))
    check_room(target.parent, needed, shape)
    log.info(f"{target}: caching {len(paths)} images at {size[0]}x{size[1]} ({needed / 1e9:.2f} GB)")
    with atomic_path(target) as temporary:
        offset = write_header(temporary, shape)
        fill(temporary, offset, root, paths, size, workers, progress)
    return np.load(target, mmap_mode="r")


def check_room(folder: Path, needed: int, shape: tuple[int, ...]) -> None:
    """A disk without room for the cache is refused before any image is decoded."""
    free = shutil.disk_usage(folder).free
    if free < needed + ROOM_TO_SPARE:
        raise UserError(
            f"{folder}: the image cache needs {needed / 1e9:.2f} GB ({shape[0]} images at {shape[2]}x{shape[1]}), "
            f"{free / 1e9:.2f} GB are free; free some space, put the cache on a bigger disk (train.cache_dir, "
            "--cache-dir), or set data.cache=false to decode the images every epoch instead"
        )


def write_header(path: Path, shape: tuple[int, ...]) -> int:
    """A .npy file of ``shape`` uint8 (sparse until written); returns where its data starts."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    offset = array.offset
    del array  # no page was touched: the images are written with plain writes, not through the map
    return offset


def open_cache(target: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None (with a warning) when the file is damaged: truncated, not an
    array, or of another shape; the caller then builds it again."""
    try:
        array = np.load(target, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        log.warning(f"{target}: damaged cache file ({type(error).__name__}: {error}); building it again")
        return None
    if array.shape != shape or array.dtype != np.uint8:
        log.warning(f"{target}: cache file holds {array.dtype} {array.shape}, not uint8 {shape}; building it again")
        return None
    return array


def fill(path: Path, offset: int, root: Path, paths: Sequence[str], size, workers, progress) -> None:
    """Decode ``paths`` in chunks on ``workers`` processes, at most two chunks a worker in flight,
    and write each chunk at its place in the file: memory stays a few chunks whatever N."""
    chunks = [(root, list(paths[k : k + CHUNK]), size) for k in range(0, len(paths), CHUNK)]
    workers = workers or os.cpu_count() or 1
    image_bytes = size[0] * size[1] * 3
    with ExitStack() as stack, path.open("r+b") as handle:
        if workers > 1 and len(chunks) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            decoded = bounded_map(pool, decode_chunk, chunks, 2 * workers)
        else:
            decoded = map(decode_chunk, chunks)
        done = 0
        for images in decoded:
            os.pwrite(handle.fileno(), np.ascontiguousarray(images).tobytes(), offset + done * image_bytes)
            done += len(images)
            if progress:
                progress(done, len(paths))


def bounded_map(pool: ProcessPoolExecutor, function, items: list, window: int):
    """``pool.map`` in order, with at most ``window`` results waiting (``map`` submits them all)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def decode_chunk(task: tuple[Path, list[str], tuple[int, int]]) -> np.ndarray:
    root, paths, size = task
    return np.stack([load_resized(root / relative, size) for relative in paths])


def load_resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB at ``size`` (width, height), bilinear. JPEGs decode at the smallest DCT scale that is
    still at least ``size`` (``draft``), which is several times faster for small targets."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", size)
            return np.asarray(image.convert("RGB").resize(size, Image.BILINEAR))
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({error})") from None


class DecodedImages:
    """The uncached path (``data.cache: false``): the same indexing as the cached array, but every
    access decodes and resizes the files again, on ``workers`` threads (PIL releases the GIL
    while decoding). Kept to measure what the cache saves."""

    def __init__(self, root: str | Path, paths: Sequence[str], size: tuple[int, int], workers: int | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.root, self.paths, self.size = Path(root), list(paths), size
        self.pool = ThreadPoolExecutor(workers or os.cpu_count() or 1)
        self.shape = (len(self.paths), size[1], size[0], 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> np.ndarray:
        if np.ndim(index) == 0:
            return load_resized(self.root / self.paths[int(index)], self.size)
        chosen = np.arange(len(self.paths))[index]
        decoded = self.pool.map(lambda k: load_resized(self.root / self.paths[k], self.size), chosen)
        return np.stack(list(decoded)) if len(chosen) else np.empty((0, *self.shape[1:]), np.uint8)
