"""Commands that use a trained model: predict, export, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import (
    Backend,
    BackendOption,
    ModelCalibration,
    Quiet,
    Track,
    TrackOptional,
    Tta,
    TtaOption,
    calibration_choice,
)
from maskcls.cli.render import err, say
from maskcls.errors import UserError


def predict(
    sources: Annotated[list[Path], typer.Argument(help="Run folders or cv groups (their models are averaged).")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder whose eval/ is predicted.")] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(help="Photos, or folders of them (recursive; jpg, jpeg, png), instead of --data (repeatable)."),
    ] = None,
    tta: TtaOption = Tta.none,
    backend: BackendOption = Backend.auto,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for test_probabilities.csv and submission.csv (default: the source)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 128,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Decoded-image cache folder (default: cache/ in the runs' runs folder).")
    ] = None,
    calibration: ModelCalibration = "auto",
    group_people: Annotated[
        bool, typer.Option(help="Cluster photos into people; vote gender and age per person (see README).")
    ] = False,
    track: Track = None,
    track_optional: TrackOptional = False,
    quiet: Quiet = False,
) -> None:
    """Per-image 18-class probabilities for the test set and a submission file (--data), or a table
    of any photos (--images: path, class, mask / gender / age, 18 probabilities, age estimate)."""
    from maskcls.inference.predict import predict_dataset, write_predictions
    from maskcls.progress import progress_bar

    if (data is None) == (images is None):
        raise UserError("say what to predict: --data DATASET (its eval/ part) or --images PHOTOS_OR_FOLDERS")
    if out_dir is None and len(sources) > 1:
        raise UserError("several sources: say where the result goes with --out")
    folder = out_dir or sources[0]
    if images is not None:
        predict_photos(
            sources, images, folder=folder, tta=tta, backend=backend, batch_size=batch_size,
            calibration=calibration_choice(calibration), quiet=quiet,
        )  # fmt: skip
        return
    from maskcls.cli.tracked import follow_tracking

    tracker = follow_tracking(track, track_optional, [folder])
    with progress_bar("predict", quiet) as progress:
        prediction = predict_dataset(
            sources, data, tta=tta.value, backend=backend.value, batch_size=batch_size, cache_dir=cache_dir,
            progress=progress, calibration=calibration_choice(calibration), group_people=group_people,
        )  # fmt: skip
    probabilities, submission = write_predictions(folder, prediction)
    if prediction.grouping is not None:
        check = prediction.grouping.check
        whole = prediction.grouping.whole_photos
        signal = f"the face crops and their whole photos in {whole}" if whole else "the photos"
        say(
            f"person grouping by {signal}, tried on {check.photos} photos of {check.people} held-out training "
            f"people: purity {check.purity:.3f}, macro F1 {check.f1_per_photo:.4f} per photo -> "
            f"{check.f1_grouped:.4f} grouped "
            f"(higher in {check.sure:.0%} of resamples); "
            f"{'applied' if prediction.grouping.applied else 'not applied'} to the test photos"
        )
    say(
        f"{submission}: {len(prediction.table)} images, {prediction.models} model(s), tta {tta.value}, "
        f"{'+'.join(prediction.backends)}{' (auto)' if backend == Backend.auto else ''}, "
        f"{prediction.images_per_second:.0f} images/s; probabilities in {probabilities}"
    )
    if tracker:
        tracker.finish_folder(folder)


def predict_photos(sources, images, *, folder, tta, backend, batch_size, calibration, quiet) -> None:
    """``predict --images``: one source's models over any photos, cropped as its training data was."""
    from maskcls.inference.inference import Predictor
    from maskcls.progress import progress_bar
    from maskcls.rundir import names
    from maskcls.rundir.folders import write_rows

    if len(sources) > 1:
        raise UserError("--images predicts with one run or cv group at a time")
    predictor = Predictor(sources[0], backend=backend.value, tta=tta.value, calibration=calibration)
    with progress_bar("predict", quiet) as progress:
        table = predictor.predict_paths(images, batch_size=batch_size, progress=progress)
    path = Path(folder) / names.PHOTO_PREDICTIONS
    write_rows(path, table.to_dict("records"))
    say(f"{path}: {len(table)} photos, {len(predictor.runs)} model(s), tta {tta.value}, {predictor.backend}")


def export(
    run: Annotated[Path, typer.Argument(help="Run folder (its best.pt is exported).")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Output file (default RUN/model.onnx; model-calibrated.onnx).")
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option(help="Apply a calibration.json inside the graph: a file, or auto (the run's cv group's)."),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="Also quantize: RUN/model-int8.onnx, calibrated on the run's training photos."),
    ] = False,
    photos: Annotated[int, typer.Option(min=1, help="Training photos the int8 calibration reads.")] = 256,
) -> None:
    """Export a run's best model as ONNX with the normalisation inside (uint8 NHWC in, 18 probabilities out)."""
    from maskcls.inference.export import export_onnx

    if int8 and (calibration is not None or out_file is not None):
        raise UserError("--int8 quantizes RUN/model.onnx as predict uses it: leave out --calibration and --out")
    path = export_onnx(run, out_file, calibration=calibration)
    say(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    if int8:
        from maskcls.inference.quantize import quantize_run

        quantized = quantize_run(run, photos=photos)
        say(f"{quantized}: {quantized.stat().st_size / 1e6:.1f} MB (int8, {photos} calibration photos at most)")


def serve(
    source: Annotated[Path, typer.Argument(help="Run folder or cv group (its models are averaged).")],
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    backend: BackendOption = Backend.auto,
    tta: TtaOption = Tta.none,
    calibration: ModelCalibration = "auto",
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body, MiB.")] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest photo, pixels (decompression-bomb guard).")
    ] = 40_000_000,
    max_files: Annotated[int, typer.Option(min=1, help="Most photos per request.")] = 16,
    map_layer: Annotated[
        str | None,
        typer.Option(help="Layer of the activation maps (/predict?maps=png; default: the last feature map)."),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, GET /model, and a web page at /."""
    from maskcls.inference.inference import Predictor
    from maskcls.inference.serve import Limits, check_port_free
    from maskcls.inference.serve import serve as run_server

    check_port_free(host, port)  # before the models load
    predictor = Predictor(
        source, backend=backend.value, tta=tta.value, calibration=calibration_choice(calibration), map_layer=map_layer
    )
    limits = Limits(int(max_upload_mb * 1024 * 1024), max_pixels, max_files)
    err.print(f"maskcls: serving {source} ({len(predictor.runs)} model(s), {backend.value}) on http://{host}:{port}/")
    run_server(predictor, host=host, port=port, limits=limits, quiet=quiet)
