"""Commands that train: train, cv, pseudo, distill, sweep, tune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import (
    CacheDir,
    Data,
    Folds,
    Override,
    PredictedGroup,
    Pruner,
    Quiet,
    Recipe,
    RunsBesideGroup,
    RunsDir,
    Seed,
    Track,
    TrackOptional,
    with_shortcuts,
)
from maskcls.cli.render import cv_line, epoch_printer, fit_line, note, out, rich_table, say, study_line
from maskcls.cli.tracked import closing_if_stopped, each_epoch, start_tracking
from maskcls.errors import UserError

RECIPE_NEEDED = (
    "maskcls {command} needs a recipe, e.g. `maskcls {command} cpu-pretrained --data DATA-faces` "
    "(a file, or a shipped recipe by name: `maskcls recipes` lists them)"
)


def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="YAML recipe file, or a shipped recipe's name (maskcls recipes); not with --resume."),
    ] = None,
    override: Override = None,
    data: Data = None,
    cache_dir: CacheDir = None,
    fold: Annotated[int | None, typer.Option(help="Validation fold (same as -o train.fold=...).")] = None,
    folds: Folds = None,
    seed: Seed = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Where run folders go (default runs; with --resume, the run's own).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a stopped run from its last.pt.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Exact run folder (default: RUNS_DIR/NAME-foldK, unique).")
    ] = None,
    track: Track = None,
    track_optional: TrackOptional = False,
    quiet: Quiet = False,
) -> None:
    """Train one model on one split; leaves runs/NAME with config, summary, TensorBoard, checkpoints."""
    from maskcls.config import load_config, parse_override

    shortcuts = {
        "data.root": data, "train.cache_dir": cache_dir, "train.fold": fold, "train.folds": folds, "seed": seed,
    }  # fmt: skip
    given = with_shortcuts(override, shortcuts)
    resume_changes = None
    if resume is not None:
        if config is not None:
            raise UserError(f"--resume {resume} continues that run with its own recipe; drop {config}")
        resume_changes = dict(parse_override(text) for text in given)  # checked against the run in fit
        given = []
    settings = load_config(config, given)  # a typo in a key fails here, before torch is imported
    if config is None and resume is None:
        raise UserError(RECIPE_NEEDED.format(command="train"))

    from maskcls.experiments.catalog import refresh_runs_table
    from maskcls.progress import progress_bar
    from maskcls.rundir.folders import runs_root
    from maskcls.training.distributed import is_main_process
    from maskcls.training.train import fit

    runs_dir = runs_dir or (runs_root(resume) if resume is not None else Path("runs"))
    tracker = start_tracking(track, track_optional, settings)
    with progress_bar("train", quiet) as progress, closing_if_stopped(tracker):
        result = fit(
            settings, runs_dir=runs_dir, resume=resume, progress=progress, run_dir=run_dir,
            on_finished=refresh_runs_table,
            on_epoch=each_epoch(epoch_printer(quiet, progress, named=False), tracker and tracker.on_epoch),
            resume_changes=resume_changes,
        )  # fmt: skip
    if tracker and is_main_process():
        tracker.finish(result.folder)
    if result.epochs_run and is_main_process():
        say(fit_line(result))


def cv(
    config: Annotated[
        Path | None, typer.Argument(help="YAML recipe file, or a shipped recipe's name (maskcls recipes).")
    ] = None,
    override: Override = None,
    data: Data = None,
    cache_dir: CacheDir = None,
    folds: Folds = None,
    seed: Seed = None,
    runs_dir: RunsDir = Path("runs"),
    devices: Annotated[
        str | None, typer.Option(help="Comma-separated devices to train folds in parallel, e.g. cuda:0,cuda:1.")
    ] = None,
    track: Track = None,
    track_optional: TrackOptional = False,
    quiet: Quiet = False,
) -> None:
    """Train every fold (skipping finished ones); write out-of-fold probabilities and the CV score."""
    from maskcls.config import load_config
    from maskcls.experiments.cv import cross_validate
    from maskcls.progress import progress_bar

    shortcuts = {"data.root": data, "train.cache_dir": cache_dir, "train.folds": folds, "seed": seed}
    settings = load_config(config, with_shortcuts(override, shortcuts))
    if config is None:
        raise UserError(RECIPE_NEEDED.format(command="cv"))

    def on_fold(fold: int, what: str) -> None:
        if not quiet:
            note(f"fold {fold}: {what}")

    tracker = start_tracking(track, track_optional, settings)
    with progress_bar("cv", quiet) as progress, closing_if_stopped(tracker):
        device_list = [name.strip() for name in devices.split(",")] if devices else None
        result = cross_validate(
            settings, runs_dir=runs_dir, devices=device_list, progress=progress, on_fold=on_fold,
            on_epoch=each_epoch(epoch_printer(quiet, progress), tracker and tracker.on_epoch),
        )  # fmt: skip
    if tracker:
        tracker.finish(result.folder)
    say(cv_line(result))


def sweep(
    config: Recipe,
    vary: Annotated[list[str], typer.Option(help="KEY=V1,V2,... the one key to change (repeat only with --grid).")],
    grid: Annotated[bool, typer.Option(help="Allow several --vary keys: every combination.")] = False,
    folds: Annotated[int | None, typer.Option(help="Cross-validate every variant with this many folds.")] = None,
    override: Override = None,
    data: Data = None,
    cache_dir: CacheDir = None,
    runs_dir: RunsDir = Path("runs"),
    track: Track = None,
    track_optional: TrackOptional = False,
    quiet: Quiet = False,
) -> None:
    """Train the base recipe once per value of one key (resumable), then print the comparison."""
    from maskcls.config import load_config
    from maskcls.experiments.catalog import best_entries, find_entries, sort_entries, table_columns, table_rows
    from maskcls.experiments.sweep import parse_vary, run_sweep
    from maskcls.progress import progress_bar

    base = load_config(config, with_shortcuts(override, {"data.root": data, "train.cache_dir": cache_dir}))
    varied = [parse_vary(text) for text in vary]

    def on_variant(index: int, total: int, variant, what: str) -> None:
        if not quiet:
            changes = ", ".join(f"{key}={value}" for key, value in variant.changes.items())
            note(f"[{index + 1}/{total}] {variant.name} ({changes}): {what}")

    tracker = start_tracking(track, track_optional, base)
    with progress_bar("sweep", quiet) as progress, closing_if_stopped(tracker):
        folder = run_sweep(
            base, varied, grid=grid, folds=folds, runs_dir=runs_dir, progress=progress, on_variant=on_variant,
            on_epoch=each_epoch(epoch_printer(quiet, progress), tracker and tracker.on_epoch),
        )  # fmt: skip
    if tracker:
        tracker.finish(folder)
    entries = find_entries(folder)
    columns = [column for column in table_columns(entries) if column not in ("kind", "date", "commit", "status")]
    entries = sort_entries(entries, "f1", columns)  # best first
    out.print(rich_table(table_rows(entries, columns), columns, title=str(folder), marks=best_entries(entries)))


def tune(
    config: Recipe,
    space: Annotated[
        Path, typer.Option(help="Search space YAML (config keys and distributions), or a shipped one's name.")
    ],
    trials: Annotated[int, typer.Option(min=1, help="Finished (complete or pruned) trials the study ends with.")],
    study: Annotated[
        str | None, typer.Option(help="Study name (default: the config's name); workers share it.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in the study folder)."),
    ] = None,
    folds: Annotated[
        int | None, typer.Option(help="Cross-validate each trial with this many folds (value: OOF F1).")
    ] = None,
    fold: Annotated[int | None, typer.Option(help="Train each trial on this fold (default: train.fold).")] = None,
    pruner: Annotated[Pruner, typer.Option(help="Stop unpromising trials early.")] = Pruner.median,
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds this worker starts new trials for.")] = None,
    heartbeat: Annotated[int, typer.Option(min=1, help="Seconds between a running trial's heartbeats.")] = 30,
    override: Override = None,
    data: Data = None,
    cache_dir: CacheDir = None,
    runs_dir: Annotated[Path, typer.Option(help="Where the study folder goes.")] = Path("runs"),
    track: Track = None,
    track_optional: TrackOptional = False,
    quiet: Quiet = False,
) -> None:
    """Search hyperparameters with Optuna (TPE sampler, pruning); several workers may share a study."""
    from maskcls.config import load_config
    from maskcls.experiments.space import read_space
    from maskcls.experiments.tune import TunePlan
    from maskcls.experiments.tune import tune as run_study
    from maskcls.progress import progress_bar

    if folds is not None and fold is not None:
        raise UserError("--folds and --fold exclude each other: cross-validate every trial, or train one fold")
    shortcuts = {"data.root": data, "train.cache_dir": cache_dir, "train.fold": fold}
    base = load_config(config, with_shortcuts(override, shortcuts))
    plan = TunePlan(
        base=base, space=read_space(space, base), trials=trials, folds=folds, pruner=pruner.value, study=study,
        storage=storage, timeout=timeout, heartbeat=heartbeat,
    )  # fmt: skip

    def on_trial(row: dict) -> None:
        if not quiet:
            value = "-" if row["value"] is None else f"{row['value']:.4f}"
            params = ", ".join(f"{key}={row[key]}" for key in (dimension.key for dimension in plan.space))
            note(f"trial {row['trial']}: {row['state']} {value} after {row['epochs']} epochs ({params})")

    tracker = start_tracking(track, track_optional, base)
    with progress_bar("trial", quiet) as progress, closing_if_stopped(tracker):
        result = run_study(
            plan, runs_dir, progress, on_trial,
            on_epoch=each_epoch(epoch_printer(quiet, progress), tracker and tracker.on_epoch),
        )  # fmt: skip
    if tracker:
        tracker.finish(result.folder)
    say(study_line(result))


def pseudo(
    group: PredictedGroup,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Least 18-class probability a test photo needs to be used.")
    ] = 0.9,
    soft: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Learn each fold model's probabilities instead, with this share of the loss."
        ),
    ] = None,
    fine_tune: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="EPOCHS", help="Continue each fold model for EPOCHS at a quarter of the learning rate."
        ),
    ] = None,
    override: Override = None,
    data: Data = None,
    runs_dir: RunsBesideGroup = None,
    quiet: Quiet = False,
) -> None:
    """Pseudo-labels: the group's confident test predictions added to every fold's training photos,
    cross-validated again as NAME-pseudo (NAME-pseudo-soft with --soft, NAME-...-ft with
    --fine-tune; out-of-fold scores on real labels only; -o changes the second round's recipe)."""
    from maskcls.experiments.pseudo import second_round
    from maskcls.progress import progress_bar

    with progress_bar("cv", quiet) as progress:
        path, count, result = second_round(
            group, threshold=threshold, soft=soft, fine_tune=fine_tune, data=data, overrides=override or [],
            runs_dir=runs_dir or group.parent, progress=progress, on_epoch=epoch_printer(quiet, progress),
        )  # fmt: skip
    kind = "pseudo-labels" if soft is None else "soft pseudo-labels"
    say(f"{path}: {count} {kind} of the fold models at probability >= {threshold}")
    say(cv_line(result))


def distill(
    group: PredictedGroup,
    weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of the loss that learns the teacher's probabilities.")
    ] = 0.5,
    override: Override = None,
    data: Data = None,
    runs_dir: RunsBesideGroup = None,
    quiet: Quiet = False,
) -> None:
    """Distillation: the group's ensemble taught into one model, NAME-student (its out-of-fold
    probabilities of the training photos and its test probabilities as soft labels; -o changes the
    student's recipe, e.g. a smaller backbone)."""
    from maskcls.experiments.distill import distill as teach
    from maskcls.progress import progress_bar

    with progress_bar("epoch", quiet) as progress:
        path, count, result = teach(
            group, weight=weight, data=data, overrides=override or [], runs_dir=runs_dir or group.parent,
            progress=progress, on_epoch=epoch_printer(quiet, progress),
        )  # fmt: skip
    say(f"{path}: the teacher's probabilities of {count} photos")
    say(fit_line(result))
