"""Commands on the record of experiments: runs, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import TableFormat, Track
from maskcls.cli.render import out, rich_table, say


def runs(
    runs_dir: Annotated[Path, typer.Option("--dir", help="Folder of runs to list (searched recursively).")] = Path(
        "runs"
    ),
    sort: Annotated[str, typer.Option(help="Column to sort by; scores best first, f1 = CV F1 else valid F1.")] = "date",
    where: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE filter on a config key or column (repeatable, * globs).")
    ] = None,
    form: Annotated[TableFormat, typer.Option("--format", help="How to show the table.")] = TableFormat.table,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the table here (needed for xlsx).")] = None,
    hparams: Annotated[bool, typer.Option(help="Refresh DIR/hparams/ for TensorBoard's HPARAMS tab.")] = True,
    from_uri: Annotated[
        str | None,
        typer.Option("--from", help="An MLflow tracking server's runs instead of a folder's (everyone's)."),
    ] = None,
    experiment: Annotated[str, typer.Option(help="The MLflow experiment to list (with --from).")] = "maskcls",
) -> None:
    """One row per run or cv group, showing only the config keys that differ between them."""
    from maskcls.experiments.catalog import best_entries, find_entries, refresh_hparams, tabulate, write_table

    if from_uri is not None:
        from maskcls.tracking.table import server_entries

        found, where_from = server_entries(from_uri, experiment), f"{from_uri} ({experiment})"
    else:
        found, where_from = find_entries(runs_dir), str(runs_dir)
        if hparams:
            refresh_hparams(runs_dir, found)
    entries, columns, rows = tabulate(found, sort, where)
    if form == TableFormat.table:
        out.print(rich_table(rows, columns, marks=best_entries(entries)) if rows else f"{where_from}: no runs match")
        return
    text = write_table(rows, columns, form.value, out_file)
    if text is not None:
        out.file.write(text)
    else:
        say(f"{out_file}: {len(rows)} runs")


def track(
    folders: Annotated[list[Path], typer.Argument(help="Run folders, cv groups, sweeps, studies, or folders of them.")],
    uri: Track = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment for folders not logged before.")] = "maskcls",
) -> None:
    """Send folders to an MLflow tracking server: whatever it has not had yet (a run trained offline,
    the epochs a dead server missed). Safe to repeat: nothing is sent twice."""
    from maskcls.errors import UserError
    from maskcls.tracking.target import tracking_uri
    from maskcls.tracking.tracker import Tracker

    target = tracking_uri(uri)
    if target is None:
        raise UserError("say where to send them: --track URI (or set MLFLOW_TRACKING_URI)")
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
    tracker = Tracker(target, experiment=experiment).start()
    failed = [str(folder) for folder in folders if not tracker.finish(folder)]
    if failed:
        raise UserError(f"not sent to {target}: {', '.join(failed)} (the folders are unchanged; run this again)")
    say(f"{len(tracker.touched)} folder(s) logged on {target}: {', '.join(sorted(p.name for p in tracker.touched))}")


def report(
    source: Annotated[Path, typer.Argument(help="Run folder, cv group or study folder (maskcls tune).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file (default SOURCE/report.html).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder for the gallery images (default: the config's data.root).")
    ] = None,
    maps: Annotated[bool, typer.Option(help="Class activation maps per head (maskcls explain) in the report.")] = True,
) -> None:
    """A self-contained HTML report: learning curves, confusion matrix, F1 bars, confident mistakes, config."""
    from maskcls.experiments.report import write_report

    path = write_report(source, out_file, data, maps=maps)
    say(f"{path}: report ({path.stat().st_size / 1e6:.1f} MB, open it in a browser)")


def recipes(
    name: Annotated[str | None, typer.Argument(help="A shipped recipe to copy (with --out) or show.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write a copy of NAME here, to edit.")] = None,
) -> None:
    """The recipes that ship with maskcls (use them by name: maskcls train cpu-pretrained ...)."""
    from maskcls.recipebook import copy_recipe, recipe_names, recipe_summary, recipes_folder, shipped_recipe

    if name is None:
        for kind, title in (("recipe", "recipes"), ("space", "search spaces (tune --space NAME)")):
            say(f"{title}:")
            for shipped in recipe_names(kind):
                say(f"  {shipped:<22} {recipe_summary(shipped, kind)}")
        say(f"(in {recipes_folder()}; maskcls recipes NAME --out FILE writes a copy to edit)")
        return
    if out_file is None:
        out.file.write(shipped_recipe(name).read_text(encoding="utf-8"))
        return
    say(f"{copy_recipe(name, out_file)}: a copy of the {name} recipe")
