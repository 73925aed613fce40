"""``--track`` for every command: which URI (the option, the recipe, ``MLFLOW_TRACKING_URI``, or
the server a folder was already logged to), started before any work so that a dead server fails
at once; nothing of MLflow is imported without one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from maskcls.tracking.target import tracking_uri

if TYPE_CHECKING:
    from maskcls.config import Config
    from maskcls.tracking.tracker import Tracker


def start_tracking(option: str | None, optional: bool, settings: Config | None = None) -> Tracker | None:
    """A started tracker for a command that trains (its recipe's ``track`` section counts)."""
    track = settings.track if settings is not None else None
    uri = tracking_uri(option, track.uri if track else None)
    if uri is None:
        return None
    from maskcls.tracking.tracker import Tracker

    experiment = track.experiment if track else "maskcls"
    return Tracker(uri, experiment=experiment, optional=optional or bool(track and track.optional)).start()


def follow_tracking(option: str | None, optional: bool, folders: list[Path]) -> Tracker | None:
    """For a command on trained folders (predict, calibrate, score): the given URI, else the server
    the first of them was logged to, which then only warns when it does not answer."""
    uri = tracking_uri(option)
    if uri is None:
        from maskcls.rundir.tracked import tracked_uris

        recorded = [uri for folder in folders for uri in tracked_uris(folder)]
        if not recorded:
            return None
        uri, optional = recorded[0], True
    from maskcls.tracking.tracker import Tracker

    return Tracker(uri, optional=optional).start()


def each_epoch(*callbacks: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """One ``on_epoch`` that calls each given callback in turn."""
    chosen = [callback for callback in callbacks if callback is not None]

    def call(row: dict) -> None:
        for callback in chosen:
            callback(row)

    return call


@contextmanager
def closing_if_stopped(tracker: Tracker | None) -> Iterator[None]:
    """Around a command's work: a stop (Ctrl-C, an error) still closes what was logged, with the
    runs that did not finish marked KILLED on the server."""
    try:
        yield
    except BaseException:
        if tracker is not None:
            tracker.finish_touched()
        raise
