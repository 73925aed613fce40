"""What the commands print: the two consoles, and every table and summary line they draw from
the results the library returns."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # tables stay whole in logs
err = Console(stderr=True, soft_wrap=True)

ORACLE_ROW = "oracle (ceiling)"
NAME_WIDTH = 40  # a longer name folds onto a second line


def say(text: str) -> None:
    out.print(text, highlight=False)


def note(text: str) -> None:
    err.print(text, highlight=False)


def percent(part: int, total: int) -> str:
    return f"{part / total:.1%}" if total else "-"


def print_stats(summary: dict) -> None:
    out.print(
        f"[bold]{summary['root']}[/]: {summary['train_people']} people, {summary['train_images']} train "
        f"images, {summary['eval_images']} eval images"
    )
    classes = Table("class", "mask / gender / age", "images", "share", title="18 classes (train images)")
    for row in summary["classes"]:
        classes.add_row(str(row["class"]), row["name"], str(row["images"]), f"{row['share']:.1%}")
    out.print(classes)
    attributes = Table("attribute", "value", "images", "people", title="per attribute")
    for attribute, counts in summary["images_by"].items():
        people = summary["people_by"].get(attribute, {})
        for value, images in counts.items():
            attributes.add_row(attribute, value, str(images), str(people.get(value, "")))
    out.print(attributes)
    if summary["duplicate_ids"]:
        out.print(
            f"ids used by more than one profile: {', '.join(summary['duplicate_ids'])} (people are keyed by folder)"
        )
    for what, count in summary["ignored"].items():
        out.print(f"ignored {count} {what}")
    for line in summary["corrections"]:
        out.print(f"corrected {line}")
    if summary["problems"]:
        err.print(f"[yellow]{len(summary['problems'])} problem(s) found (skipped; --strict makes them errors):[/]")
        for problem in summary["problems"]:
            where = problem["path"] + (f" line {problem['line']}" if problem["line"] is not None else "")
            err.print(f"  warning: {where}: {problem['message']}", highlight=False, markup=False)
    else:
        out.print("no problems found")


def crop_table(summary) -> Table:
    table = Table("split", "images", "detected", "fallback", "unreadable", title=f"faces in {summary.out}")
    for split, counts in summary.by_split.items():
        total = sum(counts.values())
        table.add_row(
            split, str(total), percent(counts["detected"], total), percent(counts["fallback"], total),
            str(counts["unreadable"]),
        )  # fmt: skip
    return table


def epoch_printer(quiet: bool, bar, named: bool = True):
    """``on_epoch`` for the long commands: one line per epoch (``fold2: epoch 3/10 ...`` when
    ``named``), and the bar says which run and epoch is under way."""

    def show_epoch(row: dict) -> None:
        if quiet:
            return
        note(f"{row['run']}: {epoch_line(row)}" if named else epoch_line(row))
        if bar is not None:
            following = f"epoch {row['epoch'] + 1}/{row['epochs']}" if row["epoch"] < row["epochs"] else "done"
            bar.describe(f"{row['run']} {following}" if named else following)

    return show_epoch


def epoch_line(row: dict) -> str:
    """``epoch 3/10  loss 2.1300  valid loss 1.9000  valid F1 0.4960  12.3 s  best``: one line per
    epoch, on a terminal and in logs alike."""
    best = "  best" if row["improved"] else ""
    borders = f" ({row['valid_f1_borders']:.4f} at fitted age borders)" if "valid_f1_borders" in row else ""
    return (
        f"epoch {row['epoch']}/{row['epochs']}  loss {row['train_loss']:.4f}  valid loss {row['valid_loss']:.4f}"
        f"  valid F1 {row['valid_f1']:.4f}{borders}  {row['seconds']:.1f} s{best}"
    )


def fit_line(result) -> str:
    """The line `train` ends with, from what `fit` returned."""
    borders = "" if result.valid_f1_borders is None else f", {result.valid_f1_borders:.4f} at fitted age borders"
    return (
        f"{result.folder}: best valid macro F1 {result.valid_f1:.4f} (accuracy {result.valid_accuracy:.4f}{borders}) "
        f"at epoch {result.best_epoch} of {result.epochs_run}; {result.train_images_per_second:.0f} train images/s"
    )


def cv_line(result) -> str:
    per_fold = " ".join(f"{f1:.4f}" for f1 in result.fold_f1)
    borders = "" if result.oof_f1_borders is None else f"; {result.oof_f1_borders:.4f} at held-out age borders"
    return (
        f"{result.folder}: CV macro F1 {result.oof_f1:.4f} (out-of-fold, {result.images} images{borders}), accuracy "
        f"{result.oof_accuracy:.4f}; folds {per_fold} (mean {result.fold_f1_mean:.4f} ± {result.fold_f1_std:.4f})"
    )


def study_line(result) -> str:
    counts = result.trials
    line = (
        f"{result.folder}: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed trials"
    )
    if result.best is not None:
        line += f"; best trial {result.best['trial']}: {result.best['value']:.4f}, config in {result.best_config}"
    return line


def leaderboard_table(results: dict[str, dict], oracle: dict | None) -> Table:
    """One row per submission; the attribute F1 columns are the private half's where there is one.
    With persons in the answers, the private F1's 90% interval over them and each row's share of
    resamples beating the first row."""
    half = "private" if all("private" in result for result in results.values()) else "all"
    uncertain = all("f1_interval" in result[half] for result in results.values())
    columns = ["submission", "valid/CV F1", "public F1", "private F1", "all F1", "all accuracy"]
    columns += [f"{half} {head}" for head in ("mask", "gender", "age")]
    columns += [f"{half} F1 90% interval", "beats first"] if uncertain else []
    table = Table(*columns, *(["share of oracle"] if oracle else []))
    rows = {**results, **({ORACLE_ROW: oracle} if oracle else {})}
    for name, result in rows.items():
        halves = [f"{result[part]['f1']:.4f}" if part in result else "-" for part in ("public", "private", "all")]
        parts = [f"{result[half][f'f1_{head}']:.4f}" for head in ("mask", "gender", "age")]
        if uncertain:
            parts += uncertainty_cells(result[half].get("f1_interval"), result[half].get("share_beating_first"))
        validation = result.get("validation_f1")
        share = [f"{result[half]['f1'] / oracle[half]['f1']:.0%}"] if oracle else []
        table.add_row(name, f"{validation:.4f}" if validation is not None else "-", *halves,
                      f"{result['all']['accuracy']:.4f}", *parts, *share)  # fmt: skip
    return table


def uncertainty_cells(interval: Sequence[float] | None, share: float | None) -> list[str]:
    """A 90% interval and a share of resamples beating the first, as table cells ("-" where none)."""
    return [
        f"{interval[0]:.4f}-{interval[1]:.4f}" if interval else "-",
        f"{share:.0%} of resamples" if share is not None else "-",
    ]


def resampling_note(people: str) -> str:
    """What the interval and "beats first" columns mean, for resamples of ``people``."""
    from maskcls.metrics import RESAMPLES

    return (
        f"interval: 90% of {RESAMPLES} bootstrap resamples of {people} (each with all their photos, within "
        "their gender x age group); beats first: the share of those resamples in which the row's F1 is higher "
        "than the first row's"
    )


def calibration_lines(path, result) -> list[str]:
    lines = []
    if result.age is not None:
        age = result.age
        verdict = "kept" if age.guard_passed else "not better on held-out folds: the model's own age groups kept"
        folds = "; ".join(f"{young:g}/{old:g}" for young, old in age.fold_borders)
        lines.append(
            f"{path}: age borders {age.borders[0]:g} and {age.borders[1]:g} on the age estimate (per held-out fold: "
            f"{folds}; MAE {age.scale:.2f} years): OOF macro F1 {age.oof_f1_before:.4f} -> {age.heldout_f1_after:.4f} "
            f"on held-out folds, {verdict}"
        )
    verdict = "kept" if result.guard_passed else "not better on held-out folds: zero biases written"
    lines.append(
        f"{path}: OOF macro F1 {result.oof_f1_before:.4f} -> {result.heldout_f1_after:.4f} on held-out folds "
        f"(fitted on the others; {result.oof_f1_after:.4f} in-sample), {verdict}"
    )
    return lines


def rich_table(
    rows: list[dict], columns: list[str], title: str | None = None, marks: dict | None = None, width: int | None = None
) -> Table:
    """Rows as a terminal table ``width`` characters wide (the terminal's): names are never cut
    (long ones fold onto a second line), ``marks`` (name -> "best CV" / "best run") fill a first
    column, and columns that would not fit whole are left out (the caption names them) rather
    than squeezed to a few characters each."""
    from maskcls.experiments.catalog import cell_text

    texts = [{column: cell_text(column, row[column]) for column in columns} for row in rows]
    shown, left_out = columns_that_fit(texts, columns, width or out.width, 7 if marks else 0)
    caption = f"left out to fit: {', '.join(left_out)} (--format csv shows every column)" if left_out else None
    table = Table(*(["best"] if marks else []), title=title, caption=caption)
    for column in shown:
        longest = max((len(row[column]) for row in texts), default=0)
        table.add_column(column, overflow="fold", min_width=min(longest, NAME_WIDTH) if column == "name" else None)
    for row, text in zip(rows, texts, strict=True):
        mark = [marks.get(row.get("name"), "")] if marks else []
        table.add_row(*mark, *(text[column] for column in shown))
    return table


def columns_that_fit(texts: list[dict[str, str]], columns: list[str], width: int, used: int) -> tuple[list, list]:
    """(shown, left out): columns whole at their widest cell, by priority: the name, the scores,
    then the rest in order; columns empty in every row are left out silently."""
    filled = [column for column in columns if column == "name" or any(row[column] for row in texts)]
    names = [column for column in filled if column == "name"]  # a table may have none (audit)
    natural = {
        column: min(max([len(column), *(len(row[column]) for row in texts)]), NAME_WIDTH if column == "name" else width)
        + 3  # padding and the border
        for column in filled
    }
    scores = [column for column in filled if "f1" in column or column in ("epoch", "age_mae", "minutes")]
    priority = [*names, *scores, *(column for column in filled if column not in scores and column not in names)]
    kept: set[str] = set()
    for column in priority:
        if column in names or used + natural[column] <= width:
            kept.add(column)
            used += natural[column]
    return [column for column in columns if column in kept], [c for c in filled if c not in kept]
