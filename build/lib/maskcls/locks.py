"""One writer per output folder: a second ``maskcls cv`` or ``maskcls crop`` on the same output
refuses at once, naming the process that holds it, instead of both writing the same files.

The lock is an ``flock`` on a small file beside the folder (``.NAME.lock``), so it survives
``--overwrite`` emptying the folder, and the operating system releases it when the holder exits,
even after ``kill -9``: a stale lock file never blocks anyone.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maskcls.errors import UserError


def lock_file(folder: Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def exclusive_use(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder`` for this process while the block runs; a UserError if another holds it."""
    path = lock_file(Path(folder))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UserError(busy_message(folder, handle.read())) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"maskcls {command} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def refuse_if_busy(folder: str | Path) -> None:
    """The same refusal as :func:`exclusive_use`, at once and without creating anything: for a
    command that checks its inputs (slow imports) before it takes the folder."""
    path = lock_file(Path(folder))
    if not path.exists():
        return
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy_message(folder, handle.read())) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def busy_message(folder: str | Path, holder: str) -> str:
    holder = holder.strip() or "another process"
    return f"{folder} is in use by {holder}; wait for it to finish (or stop it), then run this again"
