"""Commands on datasets: synth, stats, sheet, crop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import Corrections, DataArg, Detector, Quiet, Strict, parse_size
from maskcls.cli.render import crop_table, err, out, print_stats, say


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create.")],
    people: Annotated[int, typer.Option(min=1, help="Training people (7 images each).")] = 300,
    eval_people: Annotated[int | None, typer.Option(min=1, help="Test people; default 2/3 of --people.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same dataset.")] = 0,
    difficulty: Annotated[
        float, typer.Option(min=0, max=1, help="0 easy .. 1 hard: cue overlap, noise, label errors.")
    ] = 0.5,
    quirks: Annotated[bool, typer.Option(help="Plant the real data's oddities and problems.")] = False,
    setting: Annotated[
        str,
        typer.Option(
            help="person: one background and clothes per person, as the 7 photos of a real person share a "
            "setting; photo: drawn anew for every photo, so only the face tells people apart."
        ),
    ] = "person",
    workers: Annotated[int | None, typer.Option(min=1, help="Processes; default: all cores.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT_DIR if it exists.")] = False,
    quiet: Quiet = False,
) -> None:
    """Generate a synthetic dataset in the competition layout (answers in OUT_DIR/truth/)."""
    from maskcls.progress import progress_bar
    from maskcls.synth.generate import SynthSpec, generate_dataset

    spec = SynthSpec(
        people=people, eval_people=eval_people, seed=seed, difficulty=difficulty, quirks=quirks, setting=setting
    )
    with progress_bar("synth", quiet) as progress:
        summary = generate_dataset(out_dir, spec, workers=workers, overwrite=overwrite, progress=progress)
    out.print(
        f"wrote {summary.root}: {summary.train_images} train + {summary.eval_images} eval images "
        f"in {summary.seconds:.1f}s ({summary.images_per_second:.0f} images/s); "
        f"{len(summary.corruptions)} training labels planted wrong (see truth/corruptions.csv)"
    )


def stats(
    data: DataArg,
    corrections: Corrections = None,
    strict: Strict = False,
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


def sheet(
    data: DataArg,
    output: Annotated[Path, typer.Argument(help="PNG file to write.")],
    people: Annotated[int, typer.Option(min=1, help="How many people (one row each).")] = 6,
    seed: Annotated[int, typer.Option(help="Which people: random with this seed.")] = 0,
    corrections: Corrections = None,
) -> None:
    """Save a contact sheet: the 7 images of some people, labelled."""
    from maskcls.data.layout import read_dataset
    from maskcls.data.sheet import contact_sheet

    dataset = read_dataset(data, corrections=corrections)
    path = contact_sheet(dataset, output, people=people, seed=seed)
    out.print(f"wrote {path}")


def crop(
    data: DataArg,
    out_dir: Annotated[Path, typer.Argument(help="Folder for the cropped copy (same layout).")],
    detector: Annotated[Detector, typer.Option(help="Face detector (fixed: the fallback box).")] = Detector.mtcnn,
    margin: Annotated[float, typer.Option(min=0, help="Widen the face box by this fraction on each side.")] = 0.3,
    size: Annotated[str | None, typer.Option(help="Resize crops to WxH (e.g. 192x256); keeps aspect.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per detector call.")] = 32,
    detect_scale: Annotated[float, typer.Option(min=0.01, max=1, help="MTCNN runs on the image scaled by this.")] = 0.5,
    min_face_size: Annotated[int, typer.Option(min=1, help="Smallest face MTCNN looks for, in pixels.")] = 60,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Start OUT_DIR afresh instead of resuming.")] = False,
    quiet: Quiet = False,
) -> None:
    """Crop every train and eval image to its face; write OUT_DIR in the same layout + boxes.csv."""
    from maskcls.faces.crop import CropOptions, crop_dataset
    from maskcls.progress import progress_bar

    detector_options = {}
    if detector == Detector.mtcnn:
        detector_options = {"detect_scale": detect_scale, "min_face_size": min_face_size, "device": device}
    options = CropOptions(
        detector=detector.value, margin=margin, size=parse_size(size), batch_size=batch_size,
        detector_options=detector_options,
    )  # fmt: skip
    with progress_bar("crop", quiet) as progress:
        summary = crop_dataset(data, out_dir, options, progress=progress, overwrite=overwrite)
    out.print(crop_table(summary))
    say(
        f"{summary.processed} images cropped in {summary.seconds:.1f}s ({summary.images_per_second:.1f} images/s), "
        f"{summary.skipped} already done; record: {summary.out / 'boxes.csv'}"
    )
    if summary.unreadable:
        err.print(f"maskcls: {summary.unreadable} image(s) could not be read (status 'unreadable' in boxes.csv)")
        raise typer.Exit(1)
