"""Writing files so that a crash never leaves a half-written one: temp file, then rename."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from maskcls.errors import UserError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = current_umask()  # read once: os.umask is process-wide, so not while threads write files


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~UMASK)  # as an ordinary new file, not mkstemp's 0600
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


_REQUIRED = object()


def read_json(path: str | Path, missing: Any = _REQUIRED) -> Any:
    """A JSON file's content; a broken file names itself. A missing file is a UserError naming
    it, unless ``missing`` is given (e.g. ``{}`` for a file that only a finished job writes):
    then that is returned."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing is _REQUIRED:
            raise UserError(f"{path}: file not found") from None
        return missing
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text: a damaged file?)") from None


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_csv_atomic(target: str | Path, columns: list[str], rows: list[dict]) -> None:
    """A CSV table (header, then ``rows``) written to a temporary file, then moved over ``target``."""
    with atomic_path(target) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json_atomic(target: str | Path, data: dict) -> None:
    write_text_atomic(target, json.dumps(data, indent=2) + "\n")
