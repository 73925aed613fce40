"""Progress bars with ETA for the CLI: on a terminal only, silent under --quiet or CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_wanted(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


class Bar:
    """``bar(done, total)`` moves the bar; ``bar.describe(text)`` says what is running (which
    fold, which epoch) in front of it."""

    def __init__(self, progress: Progress, task):
        self.progress, self.task = progress, task

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def describe(self, text: str) -> None:
        self.progress.update(self.task, description=text)


@contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[Bar | None]:
    """Yield a :class:`Bar` (a ``progress(done, total)`` callback drawing a bar with ETA), or
    None when quiet or not on a terminal."""
    if not progress_wanted(quiet):
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield Bar(bar, bar.add_task(description, total=None))
