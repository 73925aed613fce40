"""What tracking costs a training run: the time of each epoch's push to a real MLflow server
against the epoch itself, and the closing push (files, figures, statuses) at the end.

    .venv/bin/python bench/tracking_overhead.py [--recipe cpu-pretrained] [--data demo-data-faces]
        [--epochs 3] [--work DIR]

Starts ``mlflow server`` (SQLite, local artifacts) on a free port, trains one fold of the recipe
with a :class:`~maskcls.tracking.tracker.Tracker` whose ``on_epoch`` is timed, then times
``finish``; prints one line per epoch and a summary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.mlflow_server: the suite's server

from tests.mlflow_server import mlflow_server  # noqa: E402

from maskcls.config import load_config  # noqa: E402
from maskcls.tracking.tracker import Tracker  # noqa: E402
from maskcls.training.train import fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-pretrained")
    parser.add_argument("--data", default="demo-data-faces")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    options = parser.parse_args()
    work = options.work or Path(tempfile.mkdtemp(prefix="maskcls-track-bench-"))
    with mlflow_server(work / "mlflow") as server:
        tracker = Tracker(server.uri).start()
        pushes: list[float] = []

        def timed_push(row: dict) -> None:
            started = time.perf_counter()
            tracker.on_epoch(row)
            pushes.append(time.perf_counter() - started)
            print(f"epoch {row['epoch']}: {row['seconds']:.1f} s training, push {pushes[-1] * 1000:.0f} ms", flush=True)

        config = load_config(options.recipe, [f"data.root={options.data}", f"train.epochs={options.epochs}"])
        result = fit(config, runs_dir=work / "runs", on_epoch=timed_push)
        started = time.perf_counter()
        assert tracker.finish(result.folder)
        closing = time.perf_counter() - started
    epoch_seconds = result.seconds / result.epochs_run
    print(
        f"{options.recipe} on {options.data}: {result.epochs_run} epochs of {epoch_seconds:.1f} s; push per epoch "
        f"{statistics.mean(pushes) * 1000:.0f} ms mean ({statistics.mean(pushes[1:] or pushes) * 1000:.0f} ms after "
        f"the first, which creates the run), {statistics.mean(pushes) / epoch_seconds:.2%} of an epoch; closing push "
        f"{closing:.2f} s"
    )


if __name__ == "__main__":
    main()
