"""The MLflow side: a :class:`Tracker` sends what a folder holds (see folders.py) to one tracking
URI and records in the folder how far it got (``tracking.json``), so that a server that stops
answering costs nothing but a warning: the folder stays the record, and the next push (the next
epoch, the end of the command, or ``maskcls track FOLDER``) sends what was missed."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from maskcls.errors import UserError
from maskcls.files import read_json
from maskcls.rundir import names
from maskcls.rundir.tracked import TrackedState, read_tracked, write_tracked
from maskcls.tracking import folders
from maskcls.tracking.folders import TAG, folder_kind
from maskcls.tracking.target import TrackingUnreachable, check_reachable

log = logging.getLogger("maskcls")
RETRY_AFTER_S = 30.0
"""After a failed push, epochs go unsent (kept in the folder) for this long before the next try."""
CLOSING_TRIES = 3
CLOSING_PAUSE_S = 2.0
CLIENT_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
"""MLflow's own defaults retry a dead server for minutes; training should not wait that long
(a user's own environment variables win)."""
PARAMS_PER_CALL, METRICS_PER_CALL = 100, 1000  # MLflow's log_batch limits
STATUS = {True: "FINISHED", False: "KILLED"}


class Tracker:
    """Logs folders (runs, cv groups, sweeps, studies, with their children) to ``uri``, in the
    MLflow experiment ``experiment``. ``optional``: a server that does not answer at :meth:`start`
    turns tracking off with a warning instead of an error."""

    def __init__(self, uri: str, *, experiment: str = "maskcls", optional: bool = False):
        self.uri, self.experiment, self.optional = uri, experiment, optional
        self.enabled = True
        self.retry_after = 0.0
        self.failing = False
        self.touched: set[Path] = set()
        """The outermost folders this tracker logged (what :meth:`finish_touched` closes)."""
        self._client = None
        self._experiment_id: str | None = None

    # --- the calls commands make ----------------------------------------------------------------

    def start(self) -> Tracker:
        """Check the server before anything runs: unreachable is an error (a warning if optional)."""
        try:
            check_reachable(self.uri)
            self.experiment_id()
        except TrackingUnreachable as error:
            if not self.optional:
                raise
            log.warning(f"{error}; tracking is off for this command (--track-optional)")
            self.enabled = False
        except Exception as error:  # a malformed URI, a store that cannot be opened
            raise UserError(f"tracking {self.uri}: {short(error)}") from None
        return self

    def on_epoch(self, row: dict) -> None:
        """After an epoch: that run's new summary rows (creating its run, and its parents', first)."""
        if "folder" in row:
            self.push(Path(row["folder"]), closing=False)

    def finish(self, folder: str | Path) -> bool:
        """At the end of a command: everything in ``folder`` (children, files, closing figures,
        statuses), retried a few times; says how to send it later if the server still fails."""
        for attempt in range(CLOSING_TRIES):
            self.retry_after = 0.0
            if self.push(Path(folder), closing=True):
                return True
            if attempt + 1 < CLOSING_TRIES:
                time.sleep(CLOSING_PAUSE_S)
        if self.enabled:
            log.warning(
                f"tracking: {folder} is complete on disk but not on {self.uri}; send it when the server is back: "
                f"maskcls track {folder} --track {self.uri}"
            )
        return False

    def finish_folder(self, folder: Path) -> None:
        """:meth:`finish` for a folder that predict or calibrate wrote to, when it is a run or a cv
        group (a submission written elsewhere belongs to no run)."""
        if folder_kind(folder) in ("run", "cv"):
            self.finish(folder)

    def finish_touched(self) -> None:
        """A command stopped (Ctrl-C, an error): close what it logged, as far as it got."""
        for folder in sorted(self.touched):
            self.finish(folder)

    def push(self, folder: Path, *, closing: bool = True) -> bool:
        """Send what the server has not had yet; True when all of it got through. Never raises for
        a server's failure: it warns once, and the next push tries again."""
        if not self.enabled or time.monotonic() < self.retry_after:
            return False
        try:
            self.sync(folder, closing=closing)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the server or the network
            self.retry_after = time.monotonic() + RETRY_AFTER_S
            if not self.failing:
                log.warning(
                    f"tracking: {self.uri} failed ({short(error)}); training goes on, the run folder keeps "
                    "everything, and what was missed is sent when the server answers"
                )
            self.failing = True
            return False
        if self.failing:
            log.info(f"tracking: {self.uri} answers again; what was missed is sent")
        self.failing = False
        return True

    def log_score(self, folder: Path, submission: Path, result: dict) -> None:
        """A scored submission as a child run of ``folder``'s run: public/private/all F1 and
        accuracy, overall and per attribute; then ``folder`` itself (its table figures)."""
        if not self.enabled:
            return
        try:
            parent = self.ensure_run(folder)
            run_id = parent.scores.get(submission.name)
            if run_id is None:
                tags = {
                    "mlflow.parentRunId": parent.run_id, f"{TAG}kind": "score", f"{TAG}submission": str(submission),
                    "mlflow.runName": f"score {folders.display_name(folder)}/{submission.name}",
                }  # fmt: skip
                run_id = self.client().create_run(parent.experiment_id, tags=tags).info.run_id
                parent.scores[submission.name] = run_id
                write_tracked(folder, parent)
            figures = {
                f"{part}_{key}": value for part in ("public", "private", "all")
                for key, value in result.get(part, {}).items()
            }  # fmt: skip
            self.log_metrics(run_id, [(0, folders.numbers(figures))])
            self.client().set_terminated(run_id, "FINISHED")
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001
            log.warning(f"tracking: the score of {submission} was not sent to {self.uri} ({short(error)})")
            return
        self.finish(folder)

    # --- what a push does -----------------------------------------------------------------------

    def sync(self, folder: Path, *, closing: bool) -> None:
        if folder_kind(folder) is None:  # a folder of runs: each tracked folder in it
            for child in sorted(path for path in folder.iterdir() if path.is_dir()):
                self.sync(child, closing=closing)
            return
        state = self.ensure_run(folder)
        self.log_epochs(folder, state)
        if closing:
            for child in folders.children(folder):
                self.sync(child, closing=True)
            self.close(folder, state)

    def ensure_run(self, folder: Path) -> TrackedState:
        """The folder's MLflow run, created (after its parent's) with tags and parameters if new."""
        parent = folders.parent_folder(folder)
        if parent is None:
            self.touched.add(folder.resolve())
        state = read_tracked(folder, self.uri)
        if state is not None:
            return state
        tags, experiment_id = folders.tags(folder), self.experiment_id()
        if parent is not None:  # a child goes where its parent went
            parent_state = self.ensure_run(parent)
            tags["mlflow.parentRunId"], experiment_id = parent_state.run_id, parent_state.experiment_id
        run_id = self.shared_study_run(folder, tags) or self.create_run(experiment_id, tags, folders.parameters(folder))
        state = TrackedState(uri=self.uri, experiment_id=experiment_id, run_id=run_id)
        write_tracked(folder, state)
        return state

    def create_run(self, experiment_id: str, tags: dict[str, str], parameters: dict[str, str]) -> str:
        from mlflow.entities import Param

        run_id = self.client().create_run(experiment_id, tags=tags).info.run_id
        items = [Param(key, value) for key, value in parameters.items()]
        for start in range(0, len(items), PARAMS_PER_CALL):
            self.client().log_batch(run_id, params=items[start : start + PARAMS_PER_CALL])
        return run_id

    def shared_study_run(self, folder: Path, tags: dict[str, str]) -> str | None:
        """A study's workers on other machines share one parent run: the one already logged under
        the study's name, if any."""
        if folder_kind(folder) != "study":
            return None
        study = tags[f"{TAG}study_name"]
        found = self.client().search_runs(
            [self.experiment_id()], f"tags.`{TAG}kind` = 'study' and tags.`{TAG}study_name` = '{study}'", max_results=1
        )
        return found[0].info.run_id if found else None

    def log_epochs(self, folder: Path, state: TrackedState) -> None:
        every = folders.epoch_metrics(folder)
        state.epochs = min(state.epochs, len(every))  # a run resumed from an earlier epoch has fewer rows
        if len(every) == state.epochs:
            return
        if state.status != "RUNNING":  # a resumed run
            self.client().update_run(state.run_id, status="RUNNING")
            state.status = "RUNNING"
        self.log_metrics(state.run_id, every[state.epochs :])
        state.epochs = len(every)
        write_tracked(folder, state)

    def close(self, folder: Path, state: TrackedState) -> None:
        """Closing figures and tags, the files not yet sent (or changed since), the final status."""
        from mlflow.entities import RunTag

        metrics, texts = folders.closing_record(folder)
        self.log_metrics(state.run_id, [(0, metrics)])
        tags = [RunTag(key, value) for key, value in texts.items()]
        if tags:
            self.client().log_batch(state.run_id, tags=tags)
        for path in folders.artifact_files(folder):
            stat = path.stat()
            version = f"{stat.st_size}:{stat.st_mtime_ns}"
            if state.artifacts.get(path.name) != version:
                self.client().log_artifact(state.run_id, str(path))
                state.artifacts[path.name] = version
                write_tracked(folder, state)
        status = STATUS[finished(folder)]
        if state.status != status:
            self.client().set_terminated(state.run_id, status)
            state.status = status
            write_tracked(folder, state)

    def log_metrics(self, run_id: str, rows: Iterable[tuple[int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, value, now, step) for step, values in rows for key, value in values.items()]
        for start in range(0, len(items), METRICS_PER_CALL):
            self.client().log_batch(run_id, metrics=items[start : start + METRICS_PER_CALL])

    # --- the client -----------------------------------------------------------------------------

    def client(self):
        if self._client is None:
            for key, value in CLIENT_SETTINGS.items():
                os.environ.setdefault(key, value)
            try:
                from mlflow.tracking import MlflowClient
            except ImportError:
                raise UserError("tracking needs MLflow's client: pip install 'maskcls[track]'") from None

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        """The experiment's id, created on first use (two workers creating it at once agree)."""
        if self._experiment_id is None:
            found = self.client().get_experiment_by_name(self.experiment)
            if found is None:
                with contextlib.suppress(Exception):  # created meanwhile by another process
                    self.client().create_experiment(self.experiment)
                found = self.client().get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id
        return self._experiment_id


def finished(folder: Path) -> bool:
    """A run with result.json; a cv group whose folds all finished; a sweep or study whose command
    ended (the push that closes it comes then)."""
    kind = folder_kind(folder)
    if kind == "run":
        return read_json(folder / names.RESULT, missing={}).get("finished", False)
    if kind == "cv":
        return (folder / names.CV_RESULT).exists() and all(finished(child) for child in folders.children(folder))
    return True


def short(error: BaseException) -> str:
    """An error's first line, without MLflow's long retry chains."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def open_tracker(uri: str | None, *, experiment: str = "maskcls", optional: bool = False) -> Tracker | None:
    """A started :class:`Tracker` for ``uri``, or None when there is nothing to track to."""
    return Tracker(uri, experiment=experiment, optional=optional).start() if uri else None
