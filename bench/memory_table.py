"""Peak memory and disk of each stage at the users' input sizes, on a competition-size set.

    python bench/memory_table.py WORK --data DATA [--sizes 96x128 192x256 288x384 384x512]
        [--code SRC] [--label after] [--stages cache train predict calibrate] [--model resnet10t]

Each stage runs as its own process, its tree's memory sampled every 0.1 s from /proc (peak
anonymous resident memory, and the same with the pages of mapped files), with ``--code``'s
``src`` first on PYTHONPATH, so the same script measures the code before and after a change
(``git worktree add ../before REV``, then ``--code ../before``):
- cache: the training images decoded into the uint8 cache at the size (disk written = its size);
- stats: the channel statistics of every training image, as `maskcls train` computes them for a
  network trained from scratch (the code before this change copied the images out of the map);
- train: `maskcls train` with a small network, one epoch of ``--batches`` batches (the channel
  statistics, the training steps, the validation of the held-out fold);
- predict: `maskcls predict` of the test set (its cache built first);
- calibrate: `maskcls calibrate` on an out-of-fold table with one row per training image.
Pages of the cache's memory map that a process reads count as its resident memory (RssFile)
but belong to the page cache, which the kernel drops under pressure; the table shows both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

PYTHON = sys.executable


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, index = [pid], 0
    while index < len(found):
        for children in Path(f"/proc/{found[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                found += [int(child) for child in children.read_text().split()]
        index += 1
    return found


def resident_kb(pids: list[int]) -> tuple[int, int]:
    """(anonymous, file-backed) resident kB of ``pids``: what the processes hold themselves, and the
    pages of mapped files (the cache's memory map) that the kernel may drop at any time."""
    anonymous = mapped = 0
    for pid in pids:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        anonymous += int(fields.get("RssAnon", "0 kB").split()[0]) + int(fields.get("RssShmem", "0 kB").split()[0])
        mapped += int(fields.get("RssFile", "0 kB").split()[0])
    return anonymous, mapped


def timed(command: list[str], code: Path, writes: Path) -> dict:
    """Wall seconds, peak memory of the process tree sampled every 0.1 s (anonymous, and with the
    mapped files' pages), and the bytes written under ``writes``."""
    before = folder_bytes(writes)
    environment = {**os.environ, "PYTHONPATH": str(code / "src"), "CI": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_anonymous = peak_total = 0
    while process.poll() is None:
        anonymous, mapped = resident_kb(tree(process.pid))
        peak_anonymous, peak_total = max(peak_anonymous, anonymous), max(peak_total, anonymous + mapped)
        time.sleep(0.1)
    error = process.stderr.read()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_anonymous / 1024),
        "peak_rss_with_map_mb": round(peak_total / 1024),
        "disk_mb": round((folder_bytes(writes) - before) / 1e6, 1),
        "exit": process.returncode,
        **({"error": error.strip().splitlines()[-1:]} if process.returncode else {}),
    }


CACHE_SCRIPT = """
import sys
from pathlib import Path
from maskcls.data.cache import cached_images
from maskcls.data.layout import read_dataset
root, size, folder = Path(sys.argv[1]), tuple(int(v) for v in sys.argv[2].split("x")), Path(sys.argv[3])
cached_images(root, list(read_dataset(root).train["path"]), size, folder)
"""


STATS_SCRIPT = """
import inspect, sys
from pathlib import Path
import numpy as np
from maskcls.config import load_config
from maskcls.data.transforms import channel_stats
from maskcls.training.prepare import prepare_data
root, size, folder = sys.argv[1], sys.argv[2].replace("x", ","), sys.argv[3]
config = load_config(None, [f"data.root={root}", f"train.image_size=[{size}]", f"train.cache_dir={folder}"])
data = prepare_data(config, Path(folder) / "runs")
rows = np.sort(data.train_rows)
if "rows" in inspect.signature(channel_stats).parameters:  # streamed from the memory map
    print(channel_stats(data.images, rows))
else:  # the code before: the training images copied out of the map first
    print(channel_stats(data.images[rows]))
"""


def out_of_fold_table(data: Path, path: Path) -> Path:
    """One row per training image with random probabilities, a fold and the true class."""
    from maskcls.data.layout import read_dataset
    from maskcls.labels import PROBABILITY_COLUMNS, age_groups, encode_classes

    train = read_dataset(data).train
    rng = np.random.default_rng(0)
    target = encode_classes(train["mask"].to_numpy(), train["gender"].to_numpy(), age_groups(train["age"].to_numpy()))
    noisy = np.eye(18)[target] * 2 + rng.random((len(train), 18))
    table = pd.DataFrame(noisy / noisy.sum(axis=1, keepdims=True), columns=PROBABILITY_COLUMNS)
    table.insert(0, "age", train["age"].to_numpy())
    table.insert(0, "fold", rng.integers(0, 5, len(train)))
    table.insert(0, "target", target)
    table.insert(0, "path", train["path"].to_numpy())
    table.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", default=["96x128", "192x256", "288x384", "384x512"])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--label", default="after")
    parser.add_argument("--stages", nargs="+", default=["cache", "stats", "train", "predict", "calibrate"])
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--accumulate", type=int, default=1, help="train.accumulate of the train stage")
    parser.add_argument("--keep-cache", action="store_true", help="do not delete each size's cache after it")
    args = parser.parse_args()
    work = args.work / args.label
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    if "calibrate" in args.stages:
        table = out_of_fold_table(args.data, work / "oof.csv")
        rows.append({"size": "-", "stage": "calibrate", **timed(
            [PYTHON, "-m", "maskcls.cli", "calibrate", str(table), "--out", str(work / "calibration.json")],
            args.code, work,
        )})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    for text in args.sizes:
        width, height = (int(v) for v in text.split("x"))
        cache, runs = work / f"cache-{text}", work / f"runs-{text}"
        commands = {
            "cache": [PYTHON, "-c", CACHE_SCRIPT, str(args.data), text, str(cache)],
            "stats": [PYTHON, "-c", STATS_SCRIPT, str(args.data), text, str(cache)],
            "train": [
                PYTHON, "-m", "maskcls.cli", "train", str(args.code / "configs" / "cpu-demo.yaml"), "--data",
                str(args.data), "--runs-dir", str(runs), "--cache-dir", str(cache), "-q", "-o", "name=mem",
                "-o", f"model.name={args.model}", "-o", "train.epochs=1", "-o", f"train.image_size=[{width},{height}]",
                *(["-o", f"train.limit_batches={args.batches}"] if args.label != "before" else []),
                *(["-o", f"train.accumulate={args.accumulate}"] if args.accumulate > 1 else []),
            ],
            "predict": [
                PYTHON, "-m", "maskcls.cli", "predict", str(runs / "mem-fold0"), "--data", str(args.data),
                "--cache-dir", str(cache), "--backend", "torch", "-q",
            ],
        }  # fmt: skip
        for stage in ("cache", "stats", "train", "predict"):
            if stage in args.stages:
                rows.append({"size": text, "stage": stage, **timed(commands[stage], args.code, work)})
                print(json.dumps(rows[-1]), flush=True)
        if not args.keep_cache:
            for path in cache.glob("*.npy"):
                path.unlink()
    print(f"\n{args.label}: {args.data}")
    print("| size | stage | seconds | peak RSS MB | with the map's pages MB | disk MB |\n|---|---|---|---|---|---|")
    for row in rows:
        failed = f" (exit {row['exit']}: {row.get('error')})" if row["exit"] else ""
        cells = [row["size"], row["stage"], f"{row['seconds']:.0f}", f"{row['peak_rss_mb']}{failed}",
                 row["peak_rss_with_map_mb"], row["disk_mb"]]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
