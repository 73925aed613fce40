"""Kill -9 at random moments, run again, and compare with a run that was never interrupted.

    .venv/bin/python bench/kill_resume.py [--trials 10] [--seed 0] [--work DIR]

The pipeline on a small synthetic set: ``crop`` (fixed box) -> ``cv`` (2 folds, tiny model)
-> ``predict``. Each trial starts it afresh, sends SIGKILL to the command running at a random
moment, then runs the whole pipeline again (every command resumes or skips finished work), and
checks that ``submission.csv`` is byte-identical to the uninterrupted run's and that every
fold's ``summary.csv`` has the same metrics (timing columns aside).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BIN = Path(sys.executable).parent / "maskcls"
TIMING = ["seconds", "train_images_per_second", "valid_seconds"]
RECIPE = """name: kr
model: {name: test_resnet, head: multi}
train: {epochs: 3, image_size: [24, 32], batch_size: 32, augmentation: seed, mixing: cutmix_vertical}
"""


def stages(work: Path) -> list[list[str]]:
    return [
        [str(BIN), "crop", str(work / "data"), str(work / "faces"), "--detector", "fixed", "--size", "48x64", "-q"],
        [str(BIN), "cv", str(work / "recipe.yaml"), "--data", str(work / "faces"), "--folds", "2",
         "--runs-dir", str(work / "runs"), "-q"],
        [str(BIN), "predict", str(work / "runs/kr-cv2"), "--data", str(work / "faces"), "--backend", "torch", "-q"],
    ]  # fmt: skip


def fresh(work: Path, data: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(data, work / "data")
    (work / "recipe.yaml").write_text(RECIPE)


def run_all(work: Path) -> None:
    for command in stages(work):
        subprocess.run(command, check=True, capture_output=True)


def kill_during(work: Path, stage: int, delay: float) -> str:
    """Run the stages before ``stage``, start it, SIGKILL it after ``delay`` seconds."""
    for command in stages(work)[:stage]:
        subprocess.run(command, check=True, capture_output=True)
    process = subprocess.Popen(stages(work)[stage], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return "killed"
    return "finished before the kill"


def outcome(work: Path) -> tuple[bytes, list[pd.DataFrame]]:
    group = work / "runs/kr-cv2"
    summaries = [pd.read_csv(group / f"fold{k}/summary.csv").drop(columns=TIMING, errors="ignore") for k in (0, 1)]
    return (group / "submission.csv").read_bytes(), summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    chance = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.work or Path(scratch)
        data = root / "synthetic"
        subprocess.run([str(BIN), "synth", str(data), "--people", "24", "--seed", "9", "-q"], check=True)
        reference = root / "reference"
        fresh(reference, data)
        timings = []
        for command in stages(reference):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            timings.append(time.perf_counter() - started)
        expected_submission, expected_summaries = outcome(reference)
        print("stage seconds uninterrupted: " + ", ".join(f"{t:.1f}" for t in timings))
        same = 0
        for trial in range(args.trials):
            work = root / f"trial{trial}"
            fresh(work, data)
            stage = chance.randrange(len(timings))
            delay = chance.uniform(0.5, max(0.6, timings[stage]))
            what = kill_during(work, stage, delay)
            run_all(work)
            submission, summaries = outcome(work)
            identical = submission == expected_submission and all(
                got.equals(want) for got, want in zip(summaries, expected_summaries, strict=True)
            )
            same += identical
            name = stages(work)[stage][1]
            print(f"trial {trial}: {name} {what} after {delay:.1f} s; rerun identical: {identical}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
        print(f"{same} of {args.trials} interrupted pipelines ended byte-identical to the uninterrupted one")


if __name__ == "__main__":
    main()
