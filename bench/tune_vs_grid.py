"""Tune vs grid on one fold, and one vs two workers: the figures of `maskcls tune`.

    python bench/tune_vs_grid.py DATA-faces RUNS --trials 12 [--config configs/cpu-pretrained.yaml]
        [--space bench/tune_space.yaml] [--workers-minutes 10]

1. `maskcls tune` with the median pruner for --trials trials: wall time W, best valid F1,
   epochs spent, share of epochs saved by pruning.
2. A grid over the same space (3 points per float range, every choice), in a shuffled order,
   trained until W has passed: best valid F1 found and epochs spent in the same wall time.
3. One worker vs two workers on this machine, each for --workers-minutes: trials finished per hour.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from maskcls.config import load_config
from maskcls.experiments.space import read_space
from maskcls.experiments.sweep import variant_config
from maskcls.files import read_json
from maskcls.rundir.folders import read_rows
from maskcls.training.train import fit


def tune_command(args, study: str, trials: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "maskcls.cli", "tune", args.config, "--space", args.space, "--trials", str(trials),
        "--study", study, "--data", args.data, "--runs-dir", args.runs, "--quiet", *extra,
    ]  # fmt: skip


def run_tune(args) -> dict:
    started = time.monotonic()
    subprocess.run(tune_command(args, "bench-tune", args.trials, ["--pruner", "median"]), check=True)
    wall = time.monotonic() - started
    summary = read_json(Path(args.runs) / "bench-tune-tune" / "study.json")
    return {"wall_s": round(wall), **summary}


def run_grid(args, budget_s: float) -> dict:
    base = load_config(args.config, [f"data.root={args.data}"])
    space = read_space(args.space, base)
    points = list(itertools.product(*(dimension.grid(3) for dimension in space)))
    random.Random(0).shuffle(points)
    started, results = time.monotonic(), []
    for index, values in enumerate(points):
        if time.monotonic() - started >= budget_s:
            break
        changes = {dimension.key: value for dimension, value in zip(space, values, strict=True)}
        folder = Path(args.runs) / "bench-grid" / f"point-{index:02d}"
        config = variant_config(base, changes, f"grid-{index:02d}", None)
        fit(config, args.runs, run_dir=folder)
        rows = read_rows(folder / "summary.csv")
        results.append(
            {"changes": changes, "valid_f1": max(float(row["valid_f1"]) for row in rows), "epochs": len(rows)}
        )
    best = max(results, key=lambda result: result["valid_f1"])
    return {
        "grid_points": len(points), "trained": len(results), "wall_s": round(time.monotonic() - started),
        "best_valid_f1": best["valid_f1"], "best": best["changes"], "epochs_spent": sum(r["epochs"] for r in results),
    }  # fmt: skip


def trials_per_hour(args, workers: int) -> dict:
    study = f"bench-workers{workers}"
    command = tune_command(args, study, 1000, ["--pruner", "none", "--timeout", str(args.workers_minutes * 60)])
    started = time.monotonic()
    processes = [subprocess.Popen(command) for _ in range(workers)]
    for process in processes:
        process.wait()
    wall = time.monotonic() - started
    counts = read_json(Path(args.runs) / f"{study}-tune" / "study.json")["trials"]
    return {"workers": workers, "wall_s": round(wall), "complete": counts["complete"],
            "trials_per_hour": round(counts["complete"] * 3600 / wall, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("runs")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--config", default="configs/cpu-pretrained.yaml")
    parser.add_argument("--space", default=str(Path(__file__).with_name("tune_space.yaml")))
    parser.add_argument("--workers-minutes", type=float, default=10)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tune", "grid", "workers"])
    args = parser.parse_args()
    results = {}
    if "tune" not in args.skip:
        results["tune"] = run_tune(args)
        print(json.dumps(results["tune"]), flush=True)
    if "grid" not in args.skip:
        results["grid"] = run_grid(args, results.get("tune", {}).get("wall_s", 900))
        print(json.dumps(results["grid"]), flush=True)
    if "workers" not in args.skip:
        for workers in (1, 2):
            results[f"workers{workers}"] = trials_per_hour(args, workers)
            print(json.dumps(results[f"workers{workers}"]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
