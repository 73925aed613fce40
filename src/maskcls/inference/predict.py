"""Test-time prediction: 18-class probabilities per eval image from runs or cv groups.

A source is a run folder (its ``best.pt``) or a cv group folder (every fold's ``best.pt``);
the probabilities of all models are averaged (a soft vote). Images come from the same cache as
training, batched; ``tta="flip"`` averages each image with its mirror. The ``onnxruntime``
backend runs each run's ``model.onnx`` (exported on first use); ``auto`` times both once per
run on this kind of device and keeps the faster (``RUN/backend.json``).

The probabilities file (``PROBABILITIES_COLUMNS``): ``ImageID`` then ``p0`` .. ``p17``, one row
per line of ``eval/info.csv`` in the same order. Training's validation and out-of-fold files
use the same ``p*`` columns with ``path``, ``profile`` and ``target`` in front.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskcls.callbacks import Progress
from maskcls.choices import BACKENDS, TTA_MODES
from maskcls.data.cache import cached_images
from maskcls.data.layout import Dataset, read_dataset
from maskcls.errors import UserError
from maskcls.evaluation.calibrate import (
    Calibration,
    calibrate_table,
    calibration_for,
    fitted_on_sources,
    made_by,
    say_if_age_uncut,
)
from maskcls.evaluation.ensemble import age_estimate_dropped
from maskcls.faces.crop import SETTINGS_JSON, crop_mismatch
from maskcls.files import read_json, write_json_atomic
from maskcls.inference.export import export_onnx, onnx_session
from maskcls.inference.loading import LoadedRun, load_run, run_folders
from maskcls.inference.people import SURE_ENOUGH, PersonGrouping, group_test_photos, vote_outputs
from maskcls.labels import (
    AGE_ESTIMATE_COLUMN,
    NUM_CLASSES,
    PROBABILITY_COLUMNS,
    mean_outputs,
    output_columns,
)
from maskcls.rundir import names
from maskcls.rundir.folders import runs_root, write_rows
from maskcls.rundir.tables import write_made_record, write_probabilities, write_submission
from maskcls.training.engine import finish, forward_outputs, inference_batch, prepare, resolve_device

log = logging.getLogger("maskcls")


@torch.no_grad()
def torch_outputs(loaded: LoadedRun, images: np.ndarray, batch_size: int, tta: str, on_batch=None) -> np.ndarray:
    """The model's outputs per image: 18 probabilities [+ the age estimate] (labels.split_outputs)."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size]))
        tensor = finish(prepare(batch, loaded.settings), loaded.settings)
        _, outputs = forward_outputs(loaded.model, tensor, loaded.settings, tta_flip=tta == "flip")
        out.append(outputs.cpu().numpy())
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(out) if out else np.empty((0, NUM_CLASSES), np.float32)


def onnx_model(run: Path, backend: str = "onnxruntime"):
    """An onnxruntime session for ``run``'s ``model.onnx`` (exported first when missing), or for
    its int8 copy (``backend="int8"``, quantized first when missing)."""
    if backend == "int8":
        from maskcls.inference.quantize import int8_model

        return onnx_session(int8_model(run))
    path = run / names.ONNX_MODEL
    if not path.exists():
        export_onnx(run, path)
    return onnx_session(path)


def onnx_outputs(session, images: np.ndarray, batch_size: int, tta: str, on_batch=None) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size])
        probabilities = session.run(None, {"images": batch})[0]
        if tta == "flip":
            mirrored = np.ascontiguousarray(batch[:, :, ::-1])
            probabilities = (probabilities + session.run(None, {"images": mirrored})[0]) / 2
        out.append(probabilities)
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(out) if out else np.empty((0, NUM_CLASSES), np.float32)


@dataclass
class Prediction:
    table: pd.DataFrame  # ImageID, p0..p17 in info.csv order: the mean over all models
    images_per_second: float
    models: int
    backends: list[str]  # what ran the models (``auto`` resolved)
    per_run: dict[Path, pd.DataFrame]  # each model's own table (the same layout)
    people: pd.DataFrame | None = None  # ImageID, person cluster (with group_people)
    grouping: PersonGrouping | None = None  # the clusters, their check on held-out people, applied or not
    sources: list[Path] = field(default_factory=list)  # the run folders or cv groups predicted
    calibration: Calibration | None = None  # applied to ``table`` and ``per_run``


def write_predictions(folder: str | Path, prediction: Prediction) -> tuple[Path, Path]:
    """``test_probabilities.csv`` and ``submission.csv`` in ``folder``; with several models also
    each run's own ``test_probabilities.csv`` and ``submission.csv`` (inputs for ``ensemble``):
    in the run folders of a group predicted into itself, else in ``folder/GROUP_RUN/``."""
    folder = Path(folder)
    if len(prediction.per_run) > 1:
        for run, table in prediction.per_run.items():
            inside = run.parent.resolve() == folder.resolve()  # a group's own folds; else keep runs untouched
            write_table_and_submission(run if inside else folder / f"{run.parent.name}_{run.name}", table)
    if prediction.people is not None:
        write_rows(folder / names.PERSON_GROUPS, prediction.people.to_dict("records"))
    probabilities, submission = write_table_and_submission(folder, prediction.table)
    grouping = prediction.grouping  # the record is where score finds the CV F1
    voted_f1 = grouping.check.f1_grouped if grouping is not None and grouping.applied else None
    write_made_record(submission, prediction.sources, *made_by(prediction.calibration, prediction.sources), voted_f1)
    return probabilities, submission


def write_table_and_submission(folder: Path, table: pd.DataFrame) -> tuple[Path, Path]:
    probabilities, submission = folder / names.TEST_PROBABILITIES, folder / names.SUBMISSION
    write_probabilities(probabilities, table)
    write_submission(submission, table["ImageID"], table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    return probabilities, submission


def predict_dataset(
    sources: list[str | Path],
    data_root: str | Path,
    *,
    tta: str = "none",
    backend: str = "torch",
    batch_size: int = 128,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    calibration: str | Path | None = "auto",
    group_people: bool = False,
) -> Prediction:
    """Mean 18-class probabilities of every model in ``sources`` for each eval image (images from
    ``cache_dir``, by default the ``cache/`` of the first run's runs folder), with the
    calibration (``maskcls calibrate``'s learned age borders and biases) applied: ``"auto"``, the
    source's own ``calibration.json`` when it has one; None, none; else that file.

    ``group_people``: cluster the photos into people and vote gender and age inside each (see
    people.py); calibration applies after the vote.

    Images listed in info.csv but missing from eval/images get the mean probabilities of the
    others (and a warning), so the submission still has every row; a file that is there but
    cannot be decoded stops the prediction, naming it."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    resolve_device(device)
    adjustments = calibration_for(sources, calibration)  # a bad file fails first
    if adjustments is not None:
        warn_if_fitted_elsewhere(adjustments, sources)
    prediction = raw_prediction(
        sources, data_root, tta=tta, backend=backend, batch_size=batch_size, cache_dir=cache_dir, device=device,
        progress=progress, group_people=group_people, calibration=adjustments,
    )  # fmt: skip
    prediction.sources = [Path(source) for source in sources]
    say_if_age_uncut(sources[0], calibration, adjustments, AGE_ESTIMATE_COLUMN in prediction.table)
    if adjustments is None:
        return prediction
    prediction.calibration = adjustments
    prediction.table = calibrate_table(prediction.table, adjustments)
    prediction.per_run = {run: calibrate_table(table, adjustments) for run, table in prediction.per_run.items()}
    return prediction


def raw_prediction(
    sources, data_root, *, tta, backend, batch_size, cache_dir, device, progress, group_people=False, calibration=None
) -> Prediction:
    check_options(tta, backend)
    runs = run_folders(sources)
    cache_dir = cache_dir if cache_dir is not None else runs_root(runs[0]) / "cache"  # where training put it
    root = Path(data_root)
    dataset = read_dataset(root, require_eval=True, require_train=False)  # a wrong folder is named first
    warn_about_crop_mismatches(runs, root)
    info = pd.read_csv(root / "eval" / "info.csv", dtype=str, keep_default_na=False)
    table = dataset.eval
    total, done = len(runs) * len(table), 0

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, total)

    per_run: dict[Path, np.ndarray] = {}
    seconds = 0.0
    paths = list(table["path"])
    used = []
    for run in runs:
        chosen = preferred_backend(run, device) if backend == "auto" else backend
        per_run[run], run_seconds = run_probabilities(
            run, root, paths, tta=tta, backend=chosen, batch_size=batch_size, cache_dir=cache_dir, device=device,
            on_batch=on_batch,
        )  # fmt: skip
        seconds += run_seconds
        used.append(chosen)
    mean = mean_outputs(list(per_run.values()))
    if len({outputs.shape[1] for outputs in per_run.values()}) > 1:
        log.warning(
            age_estimate_dropped([run for run, outputs in per_run.items() if outputs.shape[1] == mean.shape[1]])
        )
    people = grouping = None
    if group_people:
        grouping = person_grouping(runs, root, paths, cache_dir, dataset, calibration)
        if grouping.applied:
            mean = vote_outputs(mean, grouping.clusters)
            per_run = {run: vote_outputs(outputs, grouping.clusters) for run, outputs in per_run.items()}
        image_ids = info["ImageID"].to_numpy()[table["row"].to_numpy(dtype=int)]
        people = pd.DataFrame({"ImageID": image_ids, "person": grouping.clusters})
    return Prediction(
        table=full_table(info, table, mean),
        images_per_second=total / max(seconds, 1e-9),
        models=len(runs),
        backends=sorted(set(used)),
        per_run={run: full_table(info, table, outputs, warn=False) for run, outputs in per_run.items()},
        people=people,
        grouping=grouping,
    )


def warn_if_fitted_elsewhere(calibration: Calibration, sources: list[str | Path]) -> None:
    """A calibration learned on another model's out-of-fold probabilities is applied only with a word."""
    if not fitted_on_sources(calibration, sources):
        shown = ", ".join(map(str, sources))
        log.warning(
            f"{calibration.source} was fitted on {calibration.fitted_on}, not on the models predicted here "
            f"({shown}): its borders and biases may not fit them (calibrate these models' out-of-fold probabilities)"
        )


def warn_about_crop_mismatches(runs: list[Path], root: Path) -> None:
    """A model sees the test photos as it saw its training photos, or the user hears why not."""
    said = set()
    for run in runs:
        reason = crop_mismatch(run / SETTINGS_JSON, root)
        if reason and reason not in said:
            said.add(reason)
            log.warning(f"{run} {reason}")


def person_grouping(
    runs: list[Path], root: Path, paths: list[str], cache_dir, dataset: Dataset, calibration: Calibration | None
) -> PersonGrouping:
    """The test photos' person clusters; the vote is applied only where the check on held-out
    training people, whose photos are decided as the test photos will be (``calibration`` applied
    after the vote), says it raises their macro F1 (else a warning says why not)."""
    grouping = group_test_photos(runs, root, paths, cache_dir, dataset, calibration)
    check = grouping.check
    if not grouping.applied:
        log.warning(
            f"--group-people: not applied: on {check.people} held-out training people the vote does not surely "
            f"raise the macro F1 ({check.f1_per_photo:.4f} -> {check.f1_grouped:.4f}, higher in {check.sure:.0%} "
            f"of resamples of those people, {SURE_ENOUGH:.0%} needed; clustering purity {check.purity:.2f})"
        )
    return grouping


def check_options(tta: str, backend: str) -> None:
    if tta not in TTA_MODES:
        raise UserError(f"unknown tta {tta!r}; known: {', '.join(TTA_MODES)}")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def run_probabilities(
    run: Path,
    root: Path,
    paths: list[str],
    *,
    tta: str,
    backend: str,
    batch_size: int,
    cache_dir,
    device,
    on_batch,
) -> tuple[np.ndarray, float]:
    """Probabilities of one run's model and the seconds its forward passes took (no loading)."""
    if backend in ("onnxruntime", "int8"):
        session = onnx_model(run, backend)
        width, height = session.get_inputs()[0].shape[2], session.get_inputs()[0].shape[1]
        images = cached_images(root, paths, (int(width), int(height)), cache_dir)
        batch = inference_batch(batch_size, (int(width), int(height)), "cpu")  # onnxruntime runs on the CPU
        started = time.perf_counter()
        return onnx_outputs(session, images, batch, tta, on_batch), time.perf_counter() - started
    loaded = load_run(run, device)  # model and image size from one read
    images = cached_images(root, paths, loaded.image_size, cache_dir)
    batch = inference_batch(batch_size, loaded.image_size, loaded.settings.device)
    started = time.perf_counter()
    return torch_outputs(loaded, images, batch, tta, on_batch), time.perf_counter() - started


def preferred_backend(run: Path, device: str = "auto") -> str:
    """The faster of torch and onnxruntime for ``run`` on this kind of device: measured on first
    use, then read from ``RUN/backend.json`` (measured again when ``best.pt`` changed)."""
    target = resolve_device(device).type
    if target != "cpu":
        return "torch"  # the onnxruntime backend here runs on the CPU only
    path, checkpoint_time = run / names.BACKEND, (run / names.BEST_CHECKPOINT).stat().st_mtime
    if path.exists():
        record = read_json(path)
        if record.get("device") == target and record.get("checkpoint_mtime") == checkpoint_time:
            return record["backend"]
    speeds = measure_backends(run, device)
    choice = max(speeds, key=speeds.get)
    record = {"backend": choice, "images_per_second": speeds, "device": target, "checkpoint_mtime": checkpoint_time}
    write_json_atomic(path, record)
    shown = ", ".join(f"{name} {speed:.0f}" for name, speed in speeds.items())
    log.info(f"{run}: backend {choice} (images/s measured once on this {target}: {shown}; kept in {names.BACKEND})")
    return choice


def measure_backends(run: Path, device: str = "auto", batch_size: int = 64, repeats: int = 3) -> dict[str, float]:
    """Images/s of each backend on random images of the run's size (after one warm-up batch)."""
    loaded = load_run(run, device)
    width, height = loaded.image_size
    images = np.random.default_rng(0).integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)
    session = onnx_model(run)
    runners = {
        "torch": lambda: torch_outputs(loaded, images, batch_size, "none"),
        "onnxruntime": lambda: onnx_outputs(session, images, batch_size, "none"),
    }
    speeds = {}
    for name, runner in runners.items():
        runner()
        started = time.perf_counter()
        for _ in range(repeats):
            runner()
        speeds[name] = round(repeats * batch_size / (time.perf_counter() - started), 1)
    return speeds


def full_table(info: pd.DataFrame, predicted: pd.DataFrame, outputs: np.ndarray, warn: bool = True) -> pd.DataFrame:
    """One row per info.csv line (p0..p17 [, age_estimate]); rows without a readable image get
    the mean of the others."""
    average = outputs.mean(axis=0) if len(outputs) else np.full(NUM_CLASSES, 1 / NUM_CLASSES)
    full = np.tile(average, (len(info), 1))
    full[predicted["row"].to_numpy(dtype=int)] = outputs
    missing = sorted(set(range(len(info))) - set(predicted["row"].astype(int)))
    if missing and warn:
        shown = ", ".join(info["ImageID"].iloc[missing[:5]])
        log.warning(f"{len(missing)} eval image(s) could not be read and get the average prediction: {shown}")
    frame = pd.DataFrame(full, columns=output_columns(full.shape[1]))
    frame.insert(0, "ImageID", info["ImageID"].to_numpy())
    return frame
