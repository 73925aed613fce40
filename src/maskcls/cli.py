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
from maskcls.errors import Interrupted, UserError
from maskcls.files import read_json
from maskcls.rundir import names

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
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # tables stay whole in logs
err = Console(stderr=True, soft_wrap=True)
DataOpt = Annotated[Path | None, typer.Option(help="Dataset folder (same as -o data.root=...).")]
CacheDirOpt = Annotated[Path | None, typer.Option(help="Decoded-image cache folder (same as -o train.cache_dir=...).")]
RECIPE_NEEDED = (
    "maskcls {command} needs a recipe, e.g. `maskcls {command} configs/cpu-pretrained.yaml --data DATA-faces` "
    "(the repository's configs/: cpu-pretrained, cpu-demo, baseline, retrospective, multihead)"
)
BACKEND_HELP = (
    "torch, onnxruntime (exports model.onnx if missing), or auto: the faster of the two for this run on this "
    "device, timed once and kept in RUN/backend.json."
)

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
    people: Annotated[int, typer.Option(min=1, help="Training people (7 images each).")] = 300,
    eval_people: Annotated[int | None, typer.Option(min=1, help="Test people; default 2/3 of --people.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same dataset.")] = 0,
    difficulty: Annotated[
        float, typer.Option(min=0, max=1, help="0 easy .. 1 hard: cue overlap, noise, label errors.")
    ] = 0.5,
    quirks: Annotated[bool, typer.Option(help="Plant the real data's oddities and problems.")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes; default: all cores.")] = None,
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
    people: Annotated[int, typer.Option(min=1, help="How many people (one row each).")] = 6,
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
    config: Annotated[Path | None, typer.Argument(help="YAML recipe (see configs/); not with --resume.")] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="KEY=VALUE, e.g. -o optim.lr=3e-4 (repeatable).")
    ] = None,
    data: DataOpt = None,
    cache_dir: CacheDirOpt = None,
    fold: Annotated[int | None, typer.Option(help="Validation fold (same as -o train.fold=...).")] = None,
    folds: Annotated[int | None, typer.Option(help="Number of folds (same as -o train.folds=...).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same as -o seed=...).")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Where run folders go (default runs; with --resume, the run's own).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a stopped run from its last.pt.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Exact run folder (default: RUNS_DIR/NAME-foldK, unique).")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Train one model on one split; leaves runs/NAME with config, summary, TensorBoard, checkpoints."""
    from maskcls.config import load_config, parse_override

    shortcuts = {
        "data.root": data,
        "train.cache_dir": cache_dir,
        "train.fold": fold,
        "train.folds": folds,
        "seed": seed,
    }
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
    from maskcls.rundir.folders import read_rows, runs_root
    from maskcls.training.distributed import is_main_process
    from maskcls.training.train import fit

    runs_dir = runs_dir or (runs_root(resume) if resume is not None else Path("runs"))

    with progress_bar("train", quiet) as progress:
        run = fit(
            settings, runs_dir=runs_dir, resume=resume, progress=progress, run_dir=run_dir,
            on_finished=refresh_runs_table, on_epoch=epoch_printer(quiet, progress, named=False),
            resume_changes=resume_changes,
        )  # fmt: skip
    rows = read_rows(run / names.SUMMARY)
    if rows and is_main_process():
        best = max(rows, key=lambda row: float(row["valid_f1"]))
        speed = sum(float(row["train_images_per_second"]) for row in rows) / len(rows)
        out.print(
            f"{run}: best valid macro F1 {float(best['valid_f1']):.4f} (accuracy {float(best['valid_accuracy']):.4f}) "
            f"at epoch {best['epoch']} of {len(rows)}; {speed:.0f} train images/s"
        )


def epoch_printer(quiet: bool, bar, named: bool = True):
    """``on_epoch`` for the long commands: one line per epoch (``fold2: epoch 3/10 ...`` when
    ``named``), and the bar says which run and epoch is under way."""

    def show_epoch(row: dict) -> None:
        if quiet:
            return
        err.print(f"{row['run']}: {epoch_line(row)}" if named else epoch_line(row), highlight=False)
        if bar is not None:
            following = f"epoch {row['epoch'] + 1}/{row['epochs']}" if row["epoch"] < row["epochs"] else "done"
            bar.describe(f"{row['run']} {following}" if named else following)

    return show_epoch


def epoch_line(row: dict) -> str:
    """``epoch 3/10  loss 2.1300  valid loss 1.9000  valid F1 0.4960  12.3 s  best``: one line per
    epoch, on a terminal and in logs alike."""
    best = "  best" if row["improved"] else ""
    return (
        f"epoch {row['epoch']}/{row['epochs']}  loss {row['train_loss']:.4f}  valid loss {row['valid_loss']:.4f}"
        f"  valid F1 {row['valid_f1']:.4f}  {row['seconds']:.1f} s{best}"
    )


def with_shortcuts(overrides: list[str] | None, shortcuts: dict) -> list[str]:
    """``-o`` overrides plus the options that are shortcuts for config keys (when given)."""
    return [*(overrides or []), *(f"{key}={value}" for key, value in shortcuts.items() if value is not None)]


CalibrationOpt = Annotated[
    Path | None,
    typer.Option(help="Age borders and per-class biases from `maskcls calibrate` (calibration.json) to apply."),
]
OverrideOpt = Annotated[
    list[str] | None, typer.Option("--override", "-o", help="KEY=VALUE, e.g. -o optim.lr=3e-4 (repeatable).")
]


@app.command()
def cv(
    config: Annotated[Path | None, typer.Argument(help="YAML recipe (see configs/).")] = None,
    override: OverrideOpt = None,
    data: DataOpt = None,
    cache_dir: CacheDirOpt = None,
    folds: Annotated[int | None, typer.Option(help="Number of folds (same as -o train.folds=...).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same as -o seed=...).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    devices: Annotated[
        str | None, typer.Option(help="Comma-separated devices to train folds in parallel, e.g. cuda:0,cuda:1.")
    ] = None,
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
            err.print(f"fold {fold}: {what}", highlight=False)

    with progress_bar("cv", quiet) as progress:
        device_list = [name.strip() for name in devices.split(",")] if devices else None
        group = cross_validate(
            settings, runs_dir=runs_dir, devices=device_list, progress=progress, on_fold=on_fold,
            on_epoch=epoch_printer(quiet, progress),
        )  # fmt: skip
    result = read_json(group / names.CV_RESULT)
    per_fold = " ".join(f"{fold['valid_f1']:.4f}" for fold in result["folds"])
    out.print(
        f"{group}: CV macro F1 {result['oof_f1']:.4f} (out-of-fold, {result['images']} images), accuracy "
        f"{result['oof_accuracy']:.4f}; folds {per_fold} (mean {result['fold_f1_mean']:.4f} "
        f"± {result['fold_f1_std']:.4f})",
        highlight=False,
    )


@app.command()
def predict(
    sources: Annotated[list[Path], typer.Argument(help="Run folders or cv groups (their models are averaged).")],
    data: Annotated[Path, typer.Option(help="Dataset folder whose eval/ is predicted.")],
    tta: Annotated[str, typer.Option(help="Test-time augmentation: none or flip.")] = "none",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for test_probabilities.csv and submission.csv (default: the source)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 128,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Decoded-image cache folder (default: cache/ in the runs' runs folder).")
    ] = None,
    calibration: CalibrationOpt = None,
    group_people: Annotated[
        bool, typer.Option(help="Cluster photos into people; vote gender and age per person (see README).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Per-image 18-class probabilities for the test set, and a submission file."""
    from maskcls.inference.predict import predict_dataset, write_predictions
    from maskcls.progress import progress_bar

    if out_dir is None and len(sources) > 1:
        raise UserError("several sources: say where the result goes with --out")
    folder = out_dir or sources[0]
    with progress_bar("predict", quiet) as progress:
        prediction = predict_dataset(
            sources, data, tta=tta, backend=backend, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
            calibration=calibration, group_people=group_people,
        )  # fmt: skip
    probabilities, submission = write_predictions(folder, prediction)
    if prediction.grouping_check is not None:
        check = prediction.grouping_check
        out.print(
            f"person grouping, tried on {check.photos} validation photos: purity {check.purity:.3f}, macro F1 "
            f"{check.f1_per_photo:.4f} per photo -> {check.f1_grouped:.4f} grouped",
            highlight=False,
        )
    out.print(
        f"{submission}: {len(prediction.table)} images, {prediction.models} model(s), tta {tta}, "
        f"{'+'.join(prediction.backends)}{' (auto)' if backend == 'auto' else ''}, "
        f"{prediction.images_per_second:.0f} images/s; probabilities in {probabilities}",
        highlight=False,
    )


@app.command()
def ensemble(
    inputs: Annotated[list[Path], typer.Argument(help="Probability files, run folders or cv groups.")],
    method: Annotated[str, typer.Option(help="soft (mean probabilities) or hard (majority vote).")] = "soft",
    weights: Annotated[str | None, typer.Option(help="Comma-separated weight per input, e.g. 2,1,1.")] = None,
    oof: Annotated[bool, typer.Option(help="Folders mean their out-of-fold / validation probabilities.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Submission file to write (test inputs).")] = None,
    probabilities: Annotated[Path | None, typer.Option(help="Also write the combined probabilities here.")] = None,
    calibration: CalibrationOpt = None,
) -> None:
    """Soft or hard voting across folds and experiments; OOF inputs report the ensemble's CV score."""
    from maskcls.evaluation.ensemble import ensemble as combine
    from maskcls.metrics import summary
    from maskcls.rundir.tables import write_probabilities, write_submission

    if not (out_file or probabilities or oof):
        raise UserError(
            "nothing to write or score: give --out FILE (a submission), --probabilities FILE, or --oof "
            "(the ensemble's out-of-fold score)"
        )
    weight_list = parse_floats(weights, "--weights") if weights else None
    result = combine(inputs, method=method, weights=weight_list, oof=oof, calibration=calibration)
    if probabilities:
        write_probabilities(probabilities, result.table)
    if out_file:
        if result.key != "ImageID":
            raise UserError("--out writes a submission: the inputs must be test probabilities (ImageID)")
        write_submission(out_file, result.table["ImageID"], result.classes)
        out.print(f"{out_file}: {len(result.classes)} images, {method} vote of {len(inputs)} inputs", highlight=False)
    if "target" in result.table.columns:
        metrics = summary(result.table["target"].to_numpy(), result.classes)
        out.print(
            f"{method} ensemble of {len(inputs)} inputs on {len(result.classes)} out-of-fold images: macro F1 "
            f"{metrics['f1']:.4f}, accuracy {metrics['accuracy']:.4f}",
            highlight=False,
        )


@app.command()
def score(
    submissions: Annotated[list[Path], typer.Argument(help="Submission files (or test probability files).")],
    truth: Annotated[Path, typer.Option(help="Answers CSV, or a synthetic dataset folder (its truth/eval.csv).")],
    per_class: Annotated[bool, typer.Option(help="Also print the F1 of each of the 18 classes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Validate submissions and print macro F1 / accuracy on public, private and all rows, next to
    the valid / CV F1 of the run or group each file came from."""
    from maskcls.evaluation.oracle import oracle_score
    from maskcls.evaluation.score import score_submission, truth_file, write_score

    results = {}
    for submission in submissions:
        results[str(submission)] = score_submission(submission, truth)
        write_score(submission, results[str(submission)])
    oracle = oracle_score(truth_file(truth).parent)
    if as_json:
        out.print_json(json.dumps({**results, **({ORACLE_ROW: oracle} if oracle else {})}))
        return
    out.print(leaderboard_table(results, oracle))
    if oracle:
        low, high = oracle["age_borders"]
        out.print(
            f"{ORACLE_ROW}: the synthetic set's latent cues read without image noise (masculinity > 0, apparent "
            f"age cut at {low:g}/{high:g}); the share column is the F1 over the oracle's",
            highlight=False,
        )
    if per_class:
        from maskcls.labels import class_name

        for name, result in results.items():
            classes = ", ".join(f"{k} {class_name(k)}: {f1:.3f}" for k, f1 in enumerate(result["per_class_f1"]))
            out.print(f"{name}: {classes}", highlight=False)


ORACLE_ROW = "oracle (ceiling)"


def leaderboard_table(results: dict[str, dict], oracle: dict | None) -> Table:
    """One row per submission; the attribute F1 columns are the private half's where there is one."""
    half = "private" if all("private" in result for result in results.values()) else "all"
    columns = ["submission", "valid/CV F1", "public F1", "private F1", "all F1", "all accuracy"]
    columns += [f"{half} {head}" for head in ("mask", "gender", "age")]
    table = Table(*columns, *(["share of oracle"] if oracle else []))
    rows = {**results, **({ORACLE_ROW: oracle} if oracle else {})}
    for name, result in rows.items():
        halves = [f"{result[part]['f1']:.4f}" if part in result else "-" for part in ("public", "private", "all")]
        parts = [f"{result[half][f'f1_{head}']:.4f}" for head in ("mask", "gender", "age")]
        validation = result.get("validation_f1")
        share = [f"{result[half]['f1'] / oracle[half]['f1']:.0%}"] if oracle else []
        table.add_row(name, f"{validation:.4f}" if validation is not None else "-", *halves,
                      f"{result['all']['accuracy']:.4f}", *parts, *share)  # fmt: skip
    return table


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder (its best.pt is exported).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Output file (default RUN/model.onnx).")] = None,
) -> None:
    """Export a run's best model as ONNX with the normalisation inside (uint8 NHWC in, 18 probabilities out)."""
    from maskcls.inference.export import export_onnx

    path = export_onnx(run, out_file)
    out.print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


@app.command()
def calibrate(
    source: Annotated[Path, typer.Argument(help="cv group, or an OOF probabilities CSV with target and fold.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Default GROUP/calibration.json.")] = None,
) -> None:
    """Age borders (for age-estimating heads) and per-class biases that raise out-of-fold macro F1,
    each checked on held-out folds; for --calibration."""
    from maskcls.evaluation.calibrate import calibrate as fit_calibration
    from maskcls.evaluation.calibrate import default_path

    result = fit_calibration(source)
    path = result.write(out_file or default_path(source))
    if result.age is not None:
        age = result.age
        verdict = "kept" if age.guard_passed else "not better on held-out folds: the model's own age groups kept"
        folds = "; ".join(f"{young:g}/{old:g}" for young, old in age.fold_borders)
        out.print(
            f"{path}: age borders {age.borders[0]:g} and {age.borders[1]:g} on the age estimate (per held-out fold: "
            f"{folds}; MAE {age.scale:.2f} years): OOF macro F1 {age.oof_f1_before:.4f} -> {age.heldout_f1_after:.4f} "
            f"on held-out folds, {verdict}",
            highlight=False,
        )
    verdict = "kept" if result.guard_passed else "not better on held-out folds: zero biases written"
    out.print(
        f"{path}: OOF macro F1 {result.oof_f1_before:.4f} -> {result.heldout_f1_after:.4f} on held-out folds "
        f"(fitted on the others; {result.oof_f1_after:.4f} in-sample), {verdict}",
        highlight=False,
    )


@app.command()
def audit(
    group: Annotated[Path, typer.Argument(help="cv group (its out-of-fold probabilities are audited).")],
    top: Annotated[int, typer.Option(min=1, help="How many suggestions to show and write.")] = 30,
    out_file: Annotated[Path | None, typer.Option("--out", help="Corrections YAML (default GROUP/audit.yaml).")] = None,
    min_share: Annotated[float, typer.Option(min=0, max=1, help="Share of a person's images that must agree.")] = 0.5,
) -> None:
    """Training labels that are probably wrong: a ranked table and a corrections YAML to review."""
    from maskcls.evaluation.audit import audit as find_suspects
    from maskcls.evaluation.audit import write_corrections

    suggestions = find_suspects(group, min_share=min_share).head(top)
    columns = ["profile", "attribute", "given", "suggested", "score", "evidence"]
    out.print(rich_table(suggestions[columns].to_dict("records"), columns, title=f"{group}: top {top} suspects"))
    path = write_corrections(suggestions, out_file or group / names.AUDIT, str(group))
    out.print(
        f"{path}: {len(suggestions)} suggested fixes (verified: false); check the photos, then train with "
        f"-o data.corrections={path}",
        highlight=False,
    )


@app.command()
def runs(
    runs_dir: Annotated[Path, typer.Option("--dir", help="Folder of runs to list (searched recursively).")] = Path(
        "runs"
    ),
    sort: Annotated[str, typer.Option(help="Column to sort by; scores best first, f1 = CV F1 else valid F1.")] = "date",
    where: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE filter on a config key or column (repeatable, * globs).")
    ] = None,
    form: Annotated[str, typer.Option("--format", help="table, csv, md or xlsx.")] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the table here (needed for xlsx).")] = None,
    hparams: Annotated[bool, typer.Option(help="Refresh DIR/hparams/ for TensorBoard's HPARAMS tab.")] = True,
) -> None:
    """One row per run or cv group, showing only the config keys that differ between them."""
    from maskcls.experiments.catalog import (
        best_entries,
        filter_entries,
        find_entries,
        refresh_hparams,
        sort_entries,
        table_columns,
        table_rows,
        write_table,
    )

    found = find_entries(runs_dir)
    if hparams:
        refresh_hparams(runs_dir, found)
    entries = filter_entries(found, where or [])
    columns = table_columns(entries)
    entries = sort_entries(entries, sort, columns)
    rows = table_rows(entries, columns)
    if form == "table":
        out.print(rich_table(rows, columns, marks=best_entries(entries)) if rows else f"{runs_dir}: no runs match")
        return
    text = write_table(rows, columns, form, out_file)
    if text is not None:
        out.file.write(text)
    else:
        out.print(f"{out_file}: {len(rows)} runs", highlight=False)


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Base YAML recipe.")],
    vary: Annotated[list[str], typer.Option(help="KEY=V1,V2,... the one key to change (repeat only with --grid).")],
    grid: Annotated[bool, typer.Option(help="Allow several --vary keys: every combination.")] = False,
    folds: Annotated[int | None, typer.Option(help="Cross-validate every variant with this many folds.")] = None,
    override: OverrideOpt = None,
    data: DataOpt = None,
    cache_dir: CacheDirOpt = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
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
            err.print(f"[{index + 1}/{total}] {variant.name} ({changes}): {what}", highlight=False)

    with progress_bar("sweep", quiet) as progress:
        folder = run_sweep(
            base, varied, grid=grid, folds=folds, runs_dir=runs_dir, progress=progress, on_variant=on_variant,
            on_epoch=epoch_printer(quiet, progress),
        )  # fmt: skip
    entries = find_entries(folder)
    columns = [column for column in table_columns(entries) if column not in ("kind", "date", "commit", "status")]
    entries = sort_entries(entries, "f1", columns)  # best first
    out.print(rich_table(table_rows(entries, columns), columns, title=str(folder), marks=best_entries(entries)))


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="Base YAML recipe.")],
    space: Annotated[Path, typer.Option(help="Search space YAML: config keys and distributions (configs/search/).")],
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
    pruner: Annotated[str, typer.Option(help="median, hyperband or none.")] = "median",
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds this worker starts new trials for.")] = None,
    heartbeat: Annotated[int, typer.Option(min=1, help="Seconds between a running trial's heartbeats.")] = 30,
    override: OverrideOpt = None,
    data: DataOpt = None,
    cache_dir: CacheDirOpt = None,
    runs_dir: Annotated[Path, typer.Option(help="Where the study folder goes.")] = Path("runs"),
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
    plan = TunePlan(base, read_space(space, base), trials, folds, pruner, study, storage, timeout, heartbeat)

    def on_trial(row: dict) -> None:
        if not quiet:
            value = "-" if row["value"] is None else f"{row['value']:.4f}"
            params = ", ".join(f"{key}={row[key]}" for key in (dimension.key for dimension in plan.space))
            err.print(
                f"trial {row['trial']}: {row['state']} {value} after {row['epochs']} epochs ({params})", highlight=False
            )

    with progress_bar("trial", quiet) as progress:
        folder = run_study(plan, runs_dir, progress, on_trial, on_epoch=epoch_printer(quiet, progress))
    summary = read_json(folder / names.STUDY_RESULT)
    best = summary.get("best")
    counts = summary["trials"]
    line = f"{folder}: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed trials"
    if best:
        line += f"; best trial {best['trial']}: {best['value']:.4f}, config in {folder / 'best.yaml'}"
    out.print(line, highlight=False)


@app.command()
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
    out.print(f"{path}: report ({path.stat().st_size / 1e6:.1f} MB, open it in a browser)", highlight=False)


@app.command()
def serve(
    source: Annotated[Path, typer.Argument(help="Run folder or cv group (its models are averaged).")],
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    tta: Annotated[str, typer.Option(help="Test-time augmentation: none or flip.")] = "none",
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body, MiB.")] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest photo, pixels (decompression-bomb guard).")
    ] = 40_000_000,
    max_files: Annotated[int, typer.Option(min=1, help="Most photos per request.")] = 16,
    quiet: Quiet = False,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, GET /model, and a web page at /."""
    from maskcls.inference.inference import Predictor
    from maskcls.inference.serve import Limits, check_port_free
    from maskcls.inference.serve import serve as run_server

    check_port_free(host, port)  # before the models load
    predictor = Predictor(source, backend=backend, tta=tta)
    limits = Limits(int(max_upload_mb * 1024 * 1024), max_pixels, max_files)
    err.print(f"maskcls: serving {source} ({len(predictor.runs)} model(s), {backend}) on http://{host}:{port}/")
    run_server(predictor, host, port, limits, quiet)


NAME_WIDTH = 40  # a longer name folds onto a second line


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


def parse_floats(text: str, option: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def percent(part: int, total: int) -> str:
    return f"{part / total:.1%}" if total else "-"


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (it may be replaced after setup)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class LibraryLogFormat(logging.Formatter):
    """``maskcls: warning: ...`` for warnings, ``maskcls: ...`` for notes such as how weights were mapped."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "warning: " if record.levelno >= logging.WARNING else ""
        return f"maskcls: {kind}{record.getMessage()}"


def show_library_warnings() -> None:
    """The library logs to the ``maskcls`` logger; the CLI prints warnings and notes on stderr."""
    logger = logging.getLogger("maskcls")
    if not logger.handlers:
        handler = StderrHandler()
        handler.setFormatter(LibraryLogFormat())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print ``maskcls: error: ...`` lines and exit 2, no traceback."""
    show_library_warnings()
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n here
    except Interrupted as error:
        err.print(f"maskcls: {error}", highlight=False, markup=False)
        sys.exit(error.exit_code)
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
