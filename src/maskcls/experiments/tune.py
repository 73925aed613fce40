"""``maskcls tune``: a hyperparameter search on Optuna that several workers (machines) can share.

runs/NAME-tune/   tune.json      the plan: base config, search space, budget, how trials are scored
                  study.db       the study (SQLite; any SQLAlchemy URL with --storage, e.g. PostgreSQL)
                  trial-0007/    one ordinary run folder (a cv group with --folds) per trial, with
                                 trial.json: study, number, parameters, state (running/complete/pruned/failed)
                  trials.csv     every trial of the study: state, value, parameters, epochs, folder
                  best.yaml      the best trial's config, ready for `maskcls train` / `maskcls cv`
                  study.json     best trial, trial counts, epochs spent and saved by pruning

A trial's value is its best validation macro F1 (one fold) or its out-of-fold F1 (``--folds``).
Each epoch (each fold) reports to the pruner, which stops trials clearly behind the others.

Several workers: start ``maskcls tune`` with the same ``--study`` and ``--storage`` anywhere; each
claims trials from the shared study until ``--trials`` of them have finished (complete or pruned).
A worker that dies stops sending its heartbeat; after the grace period the next worker to claim a
trial marks the dead worker's trial failed, and failed trials do not count, so the study still
ends with exactly ``--trials`` finished trials.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maskcls.callbacks import Progress
from maskcls.choices import PRUNERS
from maskcls.config import Config, recipe_dict, to_plain_dict
from maskcls.errors import Interrupted, NonFiniteLoss, UserError
from maskcls.experiments.catalog import refresh_runs_table
from maskcls.experiments.space import Dimension
from maskcls.experiments.sweep import same_recipe, variant_config
from maskcls.files import read_json, write_json_atomic, write_text_atomic
from maskcls.results import StudyResult, selection_f1
from maskcls.rundir import names
from maskcls.rundir.folders import keep_plan, write_rows

log = logging.getLogger("maskcls")

FINISHED_STATES = ("COMPLETE", "PRUNED")


@dataclass(kw_only=True)
class TunePlan:
    base: Config
    space: list[Dimension]
    trials: int  # finished (complete or pruned) trials the study ends with
    folds: int | None = None  # cross-validate each trial with this many folds; else one fold
    pruner: str = "median"
    study: str | None = None  # default: the base config's name
    storage: str | None = None  # default: SQLite in the study folder
    timeout: float | None = None  # seconds this worker starts new trials for
    heartbeat: int = 30  # seconds between a running trial's heartbeats

    @property
    def study_name(self) -> str:
        return self.study or self.base.name


class OverBudget(Exception):
    """A trial claimed after the study already had its trials (two workers at the same moment)."""


def tune(
    plan: TunePlan,
    runs_dir: str | Path = "runs",
    progress: Progress | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    *,
    on_epoch: Callable[[dict], None] | None = None,
) -> StudyResult:
    """Run trials until the study has ``plan.trials`` finished ones (or ``plan.timeout``); returns
    the study's folder (its tables written), trial counts and best trial. ``on_trial(row)``: after each of this worker's
    trials, its row of ``trials.csv``."""
    optuna = import_optuna()
    if plan.pruner not in PRUNERS:
        raise UserError(f"unknown pruner {plan.pruner!r}; known: {', '.join(PRUNERS)}")
    if plan.trials < 1:
        raise UserError(f"trials must be at least 1, got {plan.trials}")
    check_space_parts(plan)
    folder = Path(runs_dir) / f"{plan.study_name}-tune"
    record_plan(folder, plan)
    study = open_study(plan, folder)
    deadline = time.monotonic() + plan.timeout if plan.timeout else None
    objective = TrialObjective(plan, folder, runs_dir=runs_dir, progress=progress, on_epoch=on_epoch)
    waiting_said = False
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial, once its heartbeat is stale
        mark_dead_trials(study)
        counts = state_counts(study)
        if counts["finished"] >= plan.trials:
            break
        if counts["FAIL"] >= max(plan.trials, 3) and counts["finished"] == 0:
            raise UserError(f"{folder}: every trial failed ({counts['FAIL']}); see the trial folders' {names.TRIAL}")
        if counts["finished"] + counts["RUNNING"] >= plan.trials:  # the last trials run elsewhere
            if not waiting_said:
                log.info(
                    f"{plan.study_name}: waiting for {counts['RUNNING']} trial(s) running in other workers "
                    f"(a dead worker's trial fails {2 * plan.heartbeat} s after its last heartbeat)"
                )
                waiting_said = True
            time.sleep(min(plan.heartbeat, 5))
            continue
        study.optimize(objective, n_trials=1, catch=(OverBudget, NonFiniteLoss))
        rows, _ = write_study_tables(study, plan, folder)  # one read of the study per trial
        mine = [row for row in rows if row["trial"] == objective.last_number]
        if on_trial and mine:
            on_trial(mine[0])
    _, record = write_study_tables(study, plan, folder)
    refresh_runs_table(runs_dir)  # once per worker, not per trial: it reads every run
    return StudyResult.from_record(folder, record, folder / names.BEST_CONFIG)


def check_space_parts(plan: TunePlan) -> None:
    """Every model, loss, optimizer and scheduler a draw can name exists, before anything trains."""
    from maskcls.training.train import check_parts

    for dimension in plan.space:
        for value in dimension.corners():
            try:
                check_parts(variant_config(plan.base, {dimension.key: value}, plan.base.name, plan.folds))
            except UserError as error:
                raise UserError(f"{dimension.origin}: {dimension.key}={value!r}: {error}") from None


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("maskcls tune needs Optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize_logger = logging.getLogger("optuna.study._optimize")  # where Optuna logs a failed trial
    if not any(isinstance(existing, QuietTrialFailures) for existing in optimize_logger.filters):
        optimize_logger.addFilter(QuietTrialFailures())
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def record_plan(folder: Path, plan: TunePlan) -> None:
    """``tune.json``; an existing one must describe the same search (then this worker joins it)."""
    record = {
        "study": plan.study_name,
        "base": recipe_dict(plan.base),
        "space": {dimension.key: dimension.__dict__ for dimension in plan.space},
        "trials": plan.trials,
        "folds": plan.folds,
        "fold": plan.base.train.fold,
        "pruner": plan.pruner,
    }
    keep_plan(
        folder / names.TUNE, record, "a study", "to start another study, name it with --study NAME",
        growable={"trials": lambda stored, given: given, "base": same_recipe},  # more trials: the same search
    )  # fmt: skip


def storage_url(plan: TunePlan, folder: Path) -> str:
    return with_installed_driver(plan.storage) if plan.storage else f"sqlite:///{(folder / names.STUDY_DB).absolute()}"


def with_installed_driver(url: str) -> str:
    """``postgresql://HOST/DB`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 reads a
    URL without a driver as psycopg (3), while ``maskcls[postgres]`` installs psycopg2. A URL that
    names its driver (``postgresql+psycopg://``) is kept as given."""
    import importlib.util

    scheme, separator, rest = url.partition("://")
    if scheme != "postgresql" or not separator:
        return url
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return url


def open_study(plan: TunePlan, folder: Path):
    """The shared study: created by the first worker, joined by the others."""
    optuna = import_optuna()
    epochs = trial_epochs(plan, {}, largest=True) if plan.folds is None else plan.folds
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),  # not after step 1
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
        "none": optuna.pruners.NopPruner,
    }
    seed = plan.base.seed * 100_003 + os.getpid()  # workers draw differently; each trial's config is kept
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, plan.trials // 3)))
    storage = open_storage(plan, folder)
    return optuna.create_study(
        study_name=plan.study_name, storage=storage, sampler=sampler, pruner=pruners[plan.pruner](),
        direction="maximize", load_if_exists=True,
    )  # fmt: skip


def open_storage(plan: TunePlan, folder: Path, attempts: int = 3):
    """Optuna's RDB storage with heartbeats. Workers starting at the same moment on an empty
    database race to create its tables; the loser tries again."""
    optuna = import_optuna()
    url = storage_url(plan, folder)
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=plan.heartbeat, grace_period=2 * plan.heartbeat,
                engine_kwargs=engine_options(url),
            )  # fmt: skip
        except ImportError as error:
            raise UserError(
                f"storage {shown_url(url)}: a database driver is missing ({error}); for PostgreSQL: "
                "pip install 'maskcls[postgres]'"
            ) from None
        except Exception as error:  # sqlalchemy's errors: unreachable server, bad URL, no database, a race
            if attempt + 1 == attempts:
                raise UserError(
                    f"storage {shown_url(url)}: cannot open the study database ({type(error).__name__}: {error})"
                ) from None
            time.sleep(1 + attempt)


def shown_url(url: str) -> str:
    """The URL with its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given
        return url


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # workers on one machine wait for the file lock
    return {"pool_pre_ping": True}


def state_counts(study) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for trial in study.get_trials(deepcopy=False):
        if not trial.user_attrs.get("skipped"):  # a refused over-budget claim is no trial
            counts[trial.state.name] += 1
    counts["finished"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


class TrialObjective:
    """One trial: its config from the sampled parameters, trained as a run (or cv group) folder."""

    def __init__(self, plan: TunePlan, folder: Path, *, runs_dir, progress: Progress | None, on_epoch=None):
        self.plan, self.folder, self.runs_dir, self.progress = plan, folder, runs_dir, progress
        self.on_epoch = on_epoch
        self.last_number: int | None = None

    def __call__(self, trial) -> float:
        self.last_number = None  # a refused claim reports nothing
        check_budget(trial, self.plan.trials)
        self.last_number = trial.number
        params = {dimension.key: dimension.suggest(trial) for dimension in self.plan.space}
        name = f"{self.plan.study_name}-trial-{trial.number:04d}"
        config = variant_config(self.plan.base, params, name, self.plan.folds)
        target = self.folder / f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", f"{socket.gethostname()}:{target.absolute()}")
        record = {"study": self.plan.study_name, "number": trial.number, "params": params, "state": "running"}
        target.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target / names.TRIAL, record)
        try:
            value, epochs = self.train(trial, config, target)
        except BaseException as error:
            import optuna

            if isinstance(error, KeyboardInterrupt | Interrupted):
                self.record_failure(target, record, "interrupted (Ctrl-C)")
                raise Interrupted(interrupted_trial_message(self.plan, trial.number)) from None
            pruned = isinstance(error, optuna.TrialPruned)
            epochs = epochs_trained(target, self.plan.folds)
            trial.set_user_attr("epochs", epochs)
            self.record_failure(target, record, str(error), "pruned" if pruned else "failed", epochs)
            raise
        trial.set_user_attr("epochs", epochs)
        write_json_atomic(target / names.TRIAL, {**record, "state": "complete", "value": value, "epochs": epochs})
        return value

    def record_failure(self, target: Path, record: dict, error: str, state: str = "failed", epochs=None) -> None:
        if epochs is None:
            epochs = epochs_trained(target, self.plan.folds)
        write_json_atomic(target / names.TRIAL, {**record, "state": state, "epochs": epochs, "error": error})

    def train(self, trial, config: Config, target: Path) -> tuple[float, int]:
        from maskcls.experiments.cv import cross_validate
        from maskcls.training.train import fit

        if self.plan.folds is None:

            def report_epoch(row: dict) -> None:
                if self.on_epoch:
                    self.on_epoch({**row, "run": f"trial {trial.number}"})
                trial.report(selection_f1(row), row["epoch"])
                if trial.should_prune():
                    import optuna

                    raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} (valid F1 {selection_f1(row):.4f})")

            run = fit(config, runs_dir=self.runs_dir, progress=self.progress, run_dir=target, on_epoch=report_epoch)
            return float(run.selected_f1), epochs_trained(target, None)

        def report_fold(fold: int, what: str) -> None:
            results = [read_json(run / names.RESULT, missing={}) for run in fold_runs(target)]
            finished = [selection_f1(result) for result in results if "valid_f1" in result]
            trial.report(sum(finished) / len(finished), fold + 1)  # steps count from 1, as epochs do
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned(
                    f"pruned after fold {fold} (mean fold F1 {trial.intermediate_values[fold + 1]:.4f})"
                )

        def show_epoch(row: dict) -> None:
            if self.on_epoch:
                self.on_epoch({**row, "run": f"trial {trial.number} {row['run']}"})

        group = cross_validate(
            config, runs_dir=self.runs_dir, progress=self.progress, on_fold=report_fold, group=target,
            on_epoch=show_epoch,
        )  # fmt: skip
        return group.selected_f1, epochs_trained(target, self.plan.folds)


def interrupted_trial_message(plan: TunePlan, number: int) -> str:
    """What is true after Ctrl-C in a trial: Optuna marks it failed and never counts it, so the
    way on is the same tune command, which starts new trials until the study has its budget."""
    return (
        f"interrupted in trial {number} of study {plan.study_name!r}; the trial is marked failed and does not "
        f"count: run the same maskcls tune command again to continue the study ({plan.trials} finished trials)"
    )


class QuietTrialFailures(logging.Filter):
    """Drops Optuna's two "Trial N failed ..." warnings (one with a traceback) for a trial stopped
    with Ctrl-C, whose one line is ours, and for a refused over-budget claim, which is bookkeeping;
    other failures keep their warnings."""

    def __init__(self):
        super().__init__()
        self.quiet_trials: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        found = re.match(r"Trial (\d+) failed", record.getMessage())
        if not found:
            return True
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyboardInterrupt | Interrupted | OverBudget):
            self.quiet_trials.add(found.group(1))
        return found.group(1) not in self.quiet_trials


def check_budget(trial, budget: int) -> None:
    """Refuse a trial claimed when the study already had ``budget`` trials that are not failed:
    the claim and the count are not one transaction, so two workers can claim at once."""
    from optuna.trial import TrialState

    earlier = trial.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    if sum(other.number < trial.number for other in earlier) >= budget:
        trial.set_user_attr("skipped", f"the study already had its {budget} trials")
        raise OverBudget(f"trial {trial.number}: the study already had its {budget} trials")


def mark_dead_trials(study) -> None:
    """A failed trial whose folder is on this machine and still says running lost its worker:
    its ``trial.json`` says so."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        where, _, path = trial.user_attrs.get("folder", "").partition(":")
        record_path = Path(path) / names.TRIAL
        if where == host and record_path.exists() and read_json(record_path).get("state") == "running":
            note = "its worker stopped sending heartbeats (killed?); the study went on without it"
            write_json_atomic(record_path, {**read_json(record_path), "state": "failed", "error": note})


def fold_runs(group: Path) -> list[Path]:
    record = read_json(group / names.GROUP)
    return [group / run for run in record.get("runs", []) if (group / run).exists()]


def epochs_trained(target: Path, folds: int | None) -> int:
    """Epochs a trial trained (over all its folds)."""
    from maskcls.rundir.folders import read_rows

    runs = fold_runs(target) if folds is not None and (target / names.GROUP).exists() else [target]
    return sum(len(read_rows(run / names.SUMMARY)) for run in runs)


# --- the study's tables -------------------------------------------------------------------------


def trial_rows(study, plan: TunePlan) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("skipped"):
            continue
        row = {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value}
        row["epochs"] = trial.user_attrs.get("epochs")
        row["last_reported"] = max(trial.intermediate_values) if trial.intermediate_values else None
        params = decoded_params(plan, trial)
        for dimension in plan.space:
            value = params.get(dimension.key)
            row[dimension.key] = json.dumps(value) if isinstance(value, list | dict) else value
        row["seconds"] = round(trial.duration.total_seconds(), 1) if trial.duration else None
        row["folder"] = trial.user_attrs.get("folder")
        rows.append(row)
    return rows


def write_study_tables(study, plan: TunePlan, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``trials.csv``, ``study.json`` and (once a trial completed) ``best.yaml``; returns the trials'
    rows and the study's record."""
    rows = trial_rows(study, plan)
    if rows:
        write_rows(folder / names.TRIALS_TABLE, rows)
    counts = state_counts(study)
    complete = [row for row in rows if row["state"] == "complete"]
    finished = [row for row in rows if row["state"] in ("complete", "pruned")]
    spent = sum(row["epochs"] or 0 for row in finished)
    summary = {
        "study": plan.study_name,
        "storage": shown_url(storage_url(plan, folder)),
        "trials": {"complete": counts["COMPLETE"], "pruned": counts["PRUNED"], "failed": counts["FAIL"]},
        "epochs_spent": spent,
        "epochs_without_pruning": sum(trial_epochs(plan, row) * (plan.folds or 1) for row in finished),
    }
    if summary["epochs_without_pruning"]:
        summary["share_of_epochs_saved"] = round(1 - spent / summary["epochs_without_pruning"], 4)
    if complete:
        best = study.best_trial
        config = best_config(plan, best)
        summary["best"] = {"trial": best.number, "value": best.value, "params": decoded_params(plan, best)}
        write_text_atomic(folder / names.BEST_CONFIG, best_yaml(config, best, plan))
    write_json_atomic(folder / names.STUDY_RESULT, summary)
    return rows, summary


def trial_epochs(plan: TunePlan, params: dict[str, Any], largest: bool = False) -> int:
    """Epochs a trial with these parameters trains per fold: its own ``train.epochs`` when the
    space searches it (``largest``: the most any draw can take), else the base config's."""
    searched = next((dimension for dimension in plan.space if dimension.key == "train.epochs"), None)
    if searched is None:
        return plan.base.train.epochs
    if largest:
        return int(max(searched.corners()))
    return int(params.get("train.epochs") or plan.base.train.epochs)


def decoded_params(plan: TunePlan, trial) -> dict[str, Any]:
    dimensions = {dimension.key: dimension for dimension in plan.space}
    return {key: dimensions[key].decode(value) if key in dimensions else value for key, value in trial.params.items()}


def best_config(plan: TunePlan, trial) -> Config:
    return variant_config(plan.base, decoded_params(plan, trial), f"{plan.study_name}-best", plan.folds)


def best_yaml(config: Config, trial, plan: TunePlan) -> str:
    raw = to_plain_dict(config)
    header = (
        f"# The best trial of study {plan.study_name!r}: trial {trial.number}, value {trial.value:.4f} "
        f"({'out-of-fold' if plan.folds else 'best valid'} macro F1). Train it with\n"
        f"#   maskcls train {names.BEST_CONFIG}   (or maskcls cv)\n"
    )
    return header + yaml.safe_dump(raw, sort_keys=False)
