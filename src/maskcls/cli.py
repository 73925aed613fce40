"""The ``maskcls`` command line: one small function per command, each a thin wrapper that
parses options, calls one library function and prints the result."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from maskcls import __version__
from maskcls.errors import UserError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click import ClickException

app = typer.Typer(
    name="maskcls",
    help="Face-attribute image classification: mask state, gender and age group from photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataArg = Annotated[Path, typer.Argument(help="Dataset folder in the competition layout.")]
CorrectionsOpt = Annotated[Path | None, typer.Option("--corrections", "-c", help="YAML file of label fixes to apply.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Any problem in the data is an error (exit 2).")]


def version_callback(value: bool) -> None:
    if value:
        out.print(f"maskcls {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """maskcls: from the raw competition folder to a validated submission."""


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create.")],
    people: Annotated[int, typer.Option(help="Training people (7 images each).")] = 300,
    eval_people: Annotated[int | None, typer.Option(help="Test people; default 2/3 of --people.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same dataset.")] = 0,
    difficulty: Annotated[float, typer.Option(help="0 easy .. 1 hard: cue overlap, noise, label errors.")] = 0.5,
    quirks: Annotated[bool, typer.Option(help="Plant the real data's oddities and problems.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes; default: all cores.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT_DIR if it exists.")] = False,
    quiet: Quiet = False,
) -> None:
    """Generate a synthetic dataset in the competition layout (answers in OUT_DIR/truth/)."""
    from maskcls.progress import progress_bar
    from maskcls.synth.generate import SynthSpec, generate_dataset

    spec = SynthSpec(people=people, eval_people=eval_people, seed=seed, difficulty=difficulty, quirks=quirks)
    with progress_bar("synth", quiet) as progress:
        summary = generate_dataset(out_dir, spec, workers=workers, overwrite=overwrite, progress=progress)
    out.print(
        f"wrote {summary.root}: {summary.train_images} train + {summary.eval_images} eval images "
        f"in {summary.seconds:.1f}s ({summary.images_per_second:.0f} images/s); "
        f"{len(summary.corruptions)} training labels planted wrong (see truth/corruptions.csv)"
    )


@app.command()
def stats(
    data: DataArg,
    corrections: CorrectionsOpt = None,
    strict: StrictOpt = False,
    verify: Annotated[bool, typer.Option(help="Decode every image to find unreadable ones.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quiet: Quiet = False,
) -> None:
    """Class distribution, people and image counts, and every problem found in DATA."""
    from maskcls.data.layout import read_dataset
    from maskcls.data.stats import dataset_stats
    from maskcls.progress import progress_bar

    with progress_bar("checking images", quiet or as_json) as progress:
        dataset = read_dataset(data, corrections=corrections, strict=strict, verify_images=verify, progress=progress)
    summary = dataset_stats(dataset)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    print_stats(summary)


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


@app.command()
def sheet(
    data: DataArg,
    output: Annotated[Path, typer.Argument(help="PNG file to write.")],
    people: Annotated[int, typer.Option(help="How many people (one row each).")] = 6,
    seed: Annotated[int, typer.Option(help="Which people: random with this seed.")] = 0,
    corrections: CorrectionsOpt = None,
) -> None:
    """Save a contact sheet: the 7 images of some people, labelled."""
    from maskcls.data.layout import read_dataset
    from maskcls.data.sheet import contact_sheet

    dataset = read_dataset(data, corrections=corrections)
    path = contact_sheet(dataset, output, people=people, seed=seed)
    out.print(f"wrote {path}")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``'192x256'`` -> (192, 256)."""
    if not text:
        return None
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 192x256")
    return int(width), int(height)


@app.command()
def crop(
    data: DataArg,
    out_dir: Annotated[Path, typer.Argument(help="Folder for the cropped copy (same layout).")],
    detector: Annotated[str, typer.Option(help="Face detector: mtcnn or fixed (the fallback box).")] = "mtcnn",
    margin: Annotated[float, typer.Option(help="Widen the face box by this fraction on each side.")] = 0.3,
    size: Annotated[str | None, typer.Option(help="Resize crops to WxH (e.g. 192x256); keeps aspect.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per detector call.")] = 32,
    detect_scale: Annotated[float, typer.Option(help="MTCNN runs on the image scaled by this.")] = 0.5,
    min_face_size: Annotated[int, typer.Option(help="Smallest face MTCNN looks for, in pixels.")] = 60,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Start OUT_DIR afresh instead of resuming.")] = False,
    quiet: Quiet = False,
) -> None:
    """Crop every train and eval image to its face; write OUT_DIR in the same layout + boxes.csv."""
    from maskcls.faces.crop import CropOptions, crop_dataset
    from maskcls.progress import progress_bar

    detector_options = {}
    if detector == "mtcnn":
        detector_options = {"detect_scale": detect_scale, "min_face_size": min_face_size, "device": device}
    options = CropOptions(
        detector=detector, margin=margin, size=parse_size(size), batch_size=batch_size,
        detector_options=detector_options,
    )  # fmt: skip
    with progress_bar("crop", quiet) as progress:
        summary = crop_dataset(data, out_dir, options, progress=progress, overwrite=overwrite)
    table = Table("split", "images", "detected", "fallback", "unreadable", title=f"faces in {summary.out}")
    for split, counts in summary.by_split.items():
        total = sum(counts.values())
        table.add_row(
            split, str(total), percent(counts["detected"], total), percent(counts["fallback"], total),
            str(counts["unreadable"]),
        )  # fmt: skip
    out.print(table)
    out.print(
        f"{summary.processed} images cropped in {summary.seconds:.1f}s ({summary.images_per_second:.1f} images/s), "
        f"{summary.skipped} already done; record: {summary.out / 'boxes.csv'}"
    )
    if summary.unreadable:
        err.print(f"maskcls: {summary.unreadable} image(s) could not be read (status 'unreadable' in boxes.csv)")
        raise typer.Exit(1)


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML recipe (see configs/); defaults if omitted.")] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="KEY=VALUE, e.g. -o optim.lr=3e-4 (repeatable).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (same as -o data.root=...).")] = None,
    fold: Annotated[int | None, typer.Option(help="Validation fold (same as -o train.fold=...).")] = None,
    folds: Annotated[int | None, typer.Option(help="Number of folds (same as -o train.folds=...).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same as -o seed=...).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    resume: Annotated[Path | None, typer.Option(help="Continue a stopped run from its last.pt.")] = None,
    quiet: Quiet = False,
) -> None:
    """Train one model on one split; leaves runs/NAME with config, summary, TensorBoard, checkpoints."""
    from maskcls.config import load_config
    from maskcls.distributed import is_main_process
    from maskcls.progress import progress_bar
    from maskcls.runs import read_rows
    from maskcls.train import fit

    shortcuts = {"data.root": data, "train.fold": fold, "train.folds": folds, "seed": seed}
    overrides = [*(override or []), *(f"{key}={value}" for key, value in shortcuts.items() if value is not None)]
    settings = load_config(config, overrides)
    with progress_bar("train", quiet) as progress:
        run = fit(settings, runs_dir=runs_dir, resume=resume, progress=progress)
    rows = read_rows(run / "summary.csv")
    if rows and is_main_process():
        best = max(rows, key=lambda row: float(row["valid_f1"]))
        speed = sum(float(row["train_images_per_second"]) for row in rows) / len(rows)
        out.print(
            f"{run}: best valid macro F1 {float(best['valid_f1']):.4f} (accuracy {float(best['valid_accuracy']):.4f}) "
            f"at epoch {best['epoch']} of {len(rows)}; {speed:.0f} train images/s"
        )


def percent(part: int, total: int) -> str:
    return f"{part / total:.1%}" if total else "-"


def show_library_warnings() -> None:
    """The library logs warnings to the ``maskcls`` logger; the CLI prints them on stderr."""
    logger = logging.getLogger("maskcls")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("maskcls: warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print ``maskcls: error: ...`` lines and exit 2, no traceback."""
    show_library_warnings()
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n here
    except UserError as error:
        for line in error.lines:
            err.print(f"maskcls: error: {line}", highlight=False, markup=False)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        err.print("maskcls: aborted")
        sys.exit(130)
    except ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
