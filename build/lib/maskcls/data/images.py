"""Checking that image files decode, fast: JPEGs are decoded at 1/8 scale (``draft``), which still
reads every byte, so truncated and corrupt files are found at a fraction of a full decode."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from PIL import Image

from maskcls.callbacks import Progress


def image_error(path: str | Path) -> str | None:
    """None when the image decodes completely, else a short reason."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        return "file not found"
    except Image.DecompressionBombError:
        return "image has too many pixels (decompression bomb)"
    except (OSError, SyntaxError, ValueError) as error:
        return f"cannot decode image ({error})"
    return None


def image_errors(
    paths: Sequence[str | Path], workers: int | None = None, progress: Progress | None = None
) -> list[str | None]:
    """:func:`image_error` for many paths, in parallel processes when it pays off."""
    workers = workers or min(4, os.cpu_count() or 1)
    every = 64
    results: list[str | None] = []
    with ExitStack() as stack:
        if workers > 1 and len(paths) >= 4 * every:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            checked = pool.map(image_error, paths, chunksize=every)
        else:
            checked = map(image_error, paths)
        for result in checked:
            results.append(result)
            if progress and (len(results) % every == 0 or len(results) == len(paths)):
                progress(len(results), len(paths))
    return results
