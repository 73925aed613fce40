"""A real MLflow tracking server for the tests: ``mlflow server`` on 127.0.0.1 at a free port,
its runs in SQLite (or a given database, such as the PostgreSQL server the tune tests start) and
its artifacts in a temporary folder. ``stop()`` kills it like a crash; ``start()`` brings it back
on the same port with the same stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.postgres import free_port

START_TIMEOUT_S = 90


class MlflowServer:
    def __init__(self, folder: Path, backend: str | None = None):
        self.folder = folder
        self.backend = backend or f"sqlite:///{folder / 'mlflow.db'}"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        command = [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
            "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Kill the server and its workers at once (SIGKILL to its process group), like a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@contextmanager
def mlflow_server(folder: Path, backend: str | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(folder, backend).start()
    try:
        yield server
    finally:
        server.stop()


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_by_name(uri: str, experiment: str = "maskcls") -> dict:
    """Every run of the experiment, by its run name."""
    found = client(uri).get_experiment_by_name(experiment)
    return {run.info.run_name: run for run in client(uri).search_runs([found.experiment_id], max_results=1000)}


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client(uri).get_metric_history(run_id, key))
