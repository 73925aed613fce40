"""The runs table of a tracking server: the same rows and columns as ``maskcls runs`` on a folder,
made from what :class:`~maskcls.tracking.tracker.Tracker` logged (everyone's runs, any machine)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from maskcls.errors import UserError
from maskcls.experiments.catalog import Entry
from maskcls.tracking.folders import ENTRY_METRICS, TAG, parameter_value
from maskcls.tracking.tracker import Tracker

ROW_KINDS = ("run", "cv")


def server_entries(uri: str, experiment: str = "maskcls") -> list[Entry]:
    """One entry per run and cv group in the experiment (a group's folds make up its row)."""
    client = Tracker(uri, experiment=experiment).start().client()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"{uri}: no experiment {experiment!r} (runs logged with --track go to 'maskcls' unless told)")
    runs = all_runs(client, found.experiment_id)
    kinds = {run.info.run_id: run.data.tags.get(f"{TAG}kind") for run in runs}
    entries = []
    for run in runs:
        tags = run.data.tags
        if kinds[run.info.run_id] not in ROW_KINDS or kinds.get(tags.get("mlflow.parentRunId")) == "cv":
            continue
        entries.append(entry_of(run))
    return sorted(entries, key=lambda entry: entry.date)


def all_runs(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def entry_of(run) -> Entry:
    tags, metrics = run.data.tags, run.data.metrics
    entry = Entry(
        name=tags.get(f"{TAG}name", run.info.run_name),
        folder=Path(tags.get(f"{TAG}folder", "")),
        kind=tags[f"{TAG}kind"],
        date=datetime.fromtimestamp(run.info.start_time / 1000),
        commit=(tags.get(f"{TAG}commit") or "")[:8] or None,
        folds=tags.get(f"{TAG}folds", ""),
        status=tags.get(f"{TAG}status") or run.info.status.lower(),
        config={key: parameter_value(value) for key, value in run.data.params.items()},
        epoch=tags.get(f"{TAG}epoch", ""),
        scored=tags.get(f"{TAG}scored"),
        who=f"{tags.get('mlflow.user', '?')}@{tags.get(f'{TAG}host', '?')}",
    )
    for column, key in ENTRY_METRICS.items():
        setattr(entry, column, metrics.get(key))
    return entry
