"""A throwaway PostgreSQL server for the tests, from Debian's ``postgresql`` package.

The server runs on 127.0.0.1 at a free port with its data in a temporary folder, trusts local
connections, and is stopped at the end. As root (CI containers), it runs as the ``postgres``
user the package creates, since PostgreSQL refuses to run as root. Without the server binaries
the tests skip, saying why (CI installs the package and forbids skips).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_binaries() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of an empty database ``maskcls`` on a fresh server."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found; install Debian's postgresql package to run this test")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL cannot be started")
    folder = Path(tempfile.mkdtemp(prefix="maskcls-pg-"))
    data, port = folder / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    run = lambda *command: subprocess.run(as_server_user([str(binaries / command[0]), *command[1:]]),  # noqa: E731
                                          check=True, capture_output=True, text=True)  # fmt: skip
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "maskcls")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/maskcls"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new empty database on the server of ``url``; returns its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"
