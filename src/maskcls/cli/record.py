"""Commands on the record of experiments: runs, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import TableFormat
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
) -> None:
    """One row per run or cv group, showing only the config keys that differ between them."""
    from maskcls.experiments.catalog import best_entries, find_entries, refresh_hparams, tabulate, write_table

    found = find_entries(runs_dir)
    if hparams:
        refresh_hparams(runs_dir, found)
    entries, columns, rows = tabulate(found, sort, where)
    if form == TableFormat.table:
        out.print(rich_table(rows, columns, marks=best_entries(entries)) if rows else f"{runs_dir}: no runs match")
        return
    text = write_table(rows, columns, form.value, out_file)
    if text is not None:
        out.file.write(text)
    else:
        say(f"{out_file}: {len(rows)} runs")


def report(
    source: Annotated[Path, typer.Argument(help="Run folder, cv group or study folder (maskcls tune).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file (default SOURCE/report.html).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder for the gallery images (default: the config's data.root).")
    ] = None,
) -> None:
    """A self-contained HTML report: learning curves, confusion matrix, F1 bars, confident mistakes, config."""
    from maskcls.experiments.report import write_report

    path = write_report(source, out_file, data)
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
