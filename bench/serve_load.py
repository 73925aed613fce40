"""Load test of ``maskcls serve``: single-photo requests from concurrent clients for a bounded time.

    .venv/bin/python bench/serve_load.py demo-runs/cpu-demo-cv3 [--photos demo-data/eval/images]
        [--clients 4] [--seconds 30] [--backend torch|onnxruntime]

Starts the server as its own process on a free localhost port, waits for /health, then each
client posts one photo at a time (cycling through the folder) and times it. Prints requests/s
and the p50 / p95 / p99 latency, and fails (exit 1) if any request failed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(source: Path, port: int, backend: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "maskcls", "serve", str(source), "--port", str(port), "--backend", backend]
    server = subprocess.Popen([*command, "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("server did not start in 120 s")


def client(url: str, photos: list[tuple[str, bytes]], start: int, until: float, latencies: list, failures: list):
    with httpx.Client(timeout=30) as session:
        for name, data in itertools.islice(itertools.cycle(photos), start, None):
            if time.perf_counter() >= until:
                return
            begun = time.perf_counter()
            response = session.post(url, files={"file": (name, data, "image/jpeg")})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - begun)
            else:
                failures.append(f"{name}: {response.status_code} {response.text[:100]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--photos", type=Path, default=Path("demo-data/eval/images"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()
    photos = [(path.name, path.read_bytes()) for path in sorted(args.photos.iterdir())[:200]]
    port = free_port()
    server = start_server(args.source, port, args.backend)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        client(url, photos[:3], 0, time.perf_counter() + 2, [], [])  # warm-up
        latencies: list[float] = []
        failures: list[str] = []
        begun = time.perf_counter()
        until = begun + args.seconds
        threads = [
            threading.Thread(target=client, args=(url, photos, k * 17, until, latencies, failures))
            for k in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - begun
    finally:
        server.terminate()
        server.wait(10)
    ms = np.array(latencies) * 1000
    setting = f"{args.clients} clients, {elapsed:.0f} s, {os.cpu_count()} cores"
    print(f"maskcls serve {args.source} ({args.backend}), {setting}")
    print(f"requests: {len(latencies)} ok, {len(failures)} failed; {len(latencies) / elapsed:.1f} requests/s")
    if len(ms):
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        print(f"latency ms: p50 {p50:.0f}, p95 {p95:.0f}, p99 {p99:.0f}, max {ms.max():.0f}")
    if failures:
        print("\n".join(failures[:5]))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
