"""Which MLflow run a folder is logged to, and how far: ``tracking.json`` in a run, cv group,
sweep or study folder, one entry per tracking URI. The folder stays the record; this file only
says what a server has already been sent, so that logging resumes where it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from maskcls.files import read_json, write_json_atomic
from maskcls.rundir import names


@dataclass
class TrackedState:
    uri: str
    experiment_id: str
    run_id: str
    epochs: int = 0
    """Rows of summary.csv already logged as metrics."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """File name -> ``size:mtime_ns`` of the version logged."""
    scores: dict[str, str] = field(default_factory=dict)
    """Scored submission -> its score run's id (a child run)."""
    status: str = "RUNNING"


def read_tracked(folder: str | Path, uri: str) -> TrackedState | None:
    entry = read_json(Path(folder) / names.TRACKING, missing={}).get(uri)
    return TrackedState(uri=uri, **entry) if entry else None


def write_tracked(folder: str | Path, state: TrackedState) -> None:
    path = Path(folder) / names.TRACKING
    record = read_json(path, missing={})
    record[state.uri] = {key: value for key, value in asdict(state).items() if key != "uri"}
    write_json_atomic(path, record)


def tracked_uris(folder: str | Path) -> list[str]:
    """The URIs the folder was logged to, in the order they were first used (none for a file)."""
    return list(read_json(Path(folder) / names.TRACKING, missing={})) if Path(folder).is_dir() else []


def server_page(folder: str | Path) -> str | None:
    """The web page of the folder's run on an MLflow server it was logged to (http URIs only)."""
    record = read_json(Path(folder) / names.TRACKING, missing={})
    for uri, entry in record.items():
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{entry['experiment_id']}/runs/{entry['run_id']}"
    return None
