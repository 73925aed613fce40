"""``maskcls crop``: a copy of the dataset cut to the faces, in the same layout.

Every train and eval image the layout reader accepts is decoded, its face found (or the fixed
fallback box taken), the crop written under the same relative path and file name in OUT, and
one row per image appended to ``OUT/boxes.csv``. The CSVs are copied unchanged, so every other
command works on OUT exactly as on DATA.

Safe to kill and rerun: each image is written to a temp file and renamed; a row is appended
only after its image is in place; a rerun skips what boxes.csv and the disk say is done.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from maskcls.callbacks import Progress
from maskcls.data.layout import EVAL_CSV, TRAIN_CSV, read_dataset
from maskcls.errors import Interrupted, UserError, WriteFailed
from maskcls.faces.detectors import Box, Detection, Detector, FixedBoxDetector, create_detector
from maskcls.faces.geometry import crop_box
from maskcls.files import atomic_path, read_json, write_json_atomic
from maskcls.locks import exclusive_use
from maskcls.rundir import names

BOXES_CSV = "boxes.csv"
BOX_COLUMNS = [
    "split", "path", "status", "detector", "probability",
    "x0", "y0", "x1", "y1", "crop_x0", "crop_y0", "crop_x1", "crop_y1", "source", "error",
]  # fmt: skip
SETTINGS_JSON = names.CROP_SETTINGS
CROP_KEYS = ("detector", "margin", "size")  # what changes the pictures a model sees
PHOTOS_KEY = "photos"  # crop.json: the folder of the whole photos
COPIED = (TRAIN_CSV, EVAL_CSV)


@dataclass(frozen=True)
class CropOptions:
    detector: str = "mtcnn"
    margin: float = 0.3
    size: tuple[int, int] | None = None  # (width, height) of the saved crops; None keeps the crop size
    batch_size: int = 32
    detector_options: dict = field(default_factory=dict)
    workers: int = 2  # threads that decode and encode images around the detector
    limit: int | None = None  # process at most this many images this run (for trials and tests)


@dataclass
class CropSummary:
    out: Path
    processed: int = 0  # images handled by this run
    skipped: int = 0  # already done by an earlier run
    seconds: float = 0.0
    by_split: dict[str, Counter] = field(default_factory=dict)  # all rows of boxes.csv

    @property
    def images_per_second(self) -> float:
        return self.processed / max(self.seconds, 1e-9)

    @property
    def unreadable(self) -> int:
        return sum(counts["unreadable"] for counts in self.by_split.values())


@dataclass(frozen=True)
class Item:
    split: str
    path: str  # relative to the dataset root, the same in DATA and OUT


def crop_dataset(
    data: str | Path,
    out: str | Path,
    options: CropOptions = CropOptions(),
    progress: Progress | None = None,
    overwrite: bool = False,
) -> CropSummary:
    data, out = Path(data), Path(out)
    if out.resolve() == data.resolve():
        raise UserError(f"{out}: the output folder must differ from the dataset folder")
    if options.size and min(options.size) < 1:
        raise UserError(f"--size must be positive, got {options.size}")
    dataset = read_dataset(data)
    items = [Item("train", p) for p in dataset.train["path"]] + [Item("eval", p) for p in dataset.eval["path"]]
    detector = create_detector(options.detector, **options.detector_options)  # a missing package: no folder made
    with exclusive_use(out, "crop"):  # a second crop into the same folder refuses instead of racing
        try:
            return crop_into(data, out, items, options, detector, progress, overwrite)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; the crops finished so far are kept (listed in {out / BOXES_CSV}): run the same "
                "crop again to continue"
            ) from None


def crop_into(
    data: Path,
    out: Path,
    items: list[Item],
    options: CropOptions,
    detector: Detector,
    progress: Progress | None,
    overwrite: bool,
) -> CropSummary:
    if overwrite and out.exists():
        shutil.rmtree(out)
    check_settings(out, options, data)
    copy_tables(data, out)
    boxes_path = out / BOXES_CSV
    done = finished_paths(boxes_path, data, out)
    todo = [item for item in items if item.path not in done]
    if options.limit is not None:
        todo = todo[: options.limit]
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, options.workers)) as pool, BoxesCsv(boxes_path) as rows:
        try:
            for count, row in enumerate(crop_items(data, out, todo, detector, options, pool), 1):
                rows.writerow(row)
                if progress and (count % options.batch_size == 0 or count == len(todo)):
                    progress(count, len(todo))
        except OSError as error:  # disk full, quota, permissions: what is done stays done
            where = getattr(error, "filename", None) or boxes_path
            raise WriteFailed(
                f"{where}: could not be written ({error.strerror or error}); the crops finished so far are kept "
                f"(listed in {boxes_path}): make room and run the same crop again to continue"
            ) from None
    summary = CropSummary(out, processed=len(todo), skipped=len(items) - len(todo))
    summary.seconds = time.perf_counter() - started
    summary.by_split = count_statuses(boxes_path)
    return summary


def crop_items(
    data: Path, out: Path, items: list[Item], detector: Detector, options: CropOptions, pool: ThreadPoolExecutor
) -> Iterator[dict]:
    """Decode the next batch while the detector works on this one; save crops in the background."""
    fallback = FixedBoxDetector()
    batches = [items[k : k + options.batch_size] for k in range(0, len(items), options.batch_size)]

    def start_loading(batch: list[Item]) -> list[Future]:
        return [pool.submit(load_rgb, data / item.path) for item in batch]

    loading = start_loading(batches[0]) if batches else []
    for index, batch in enumerate(batches):
        loaded = [future.result() for future in loading]
        if index + 1 < len(batches):
            loading = start_loading(batches[index + 1])
        detections = detect_by_size(detector, loaded)
        saving: list[tuple[dict, Future | None]] = []
        for item, (image, error), detection in zip(batch, loaded, detections, strict=True):
            if image is None:
                saving.append((unreadable_row(item, error, data / item.path), None))
                continue
            row, crop = crop_one(item, data / item.path, image, detection, fallback, detector.name, options)
            saving.append((row, pool.submit(save_image, crop, out / item.path)))
        for row, future in saving:
            if future is not None:
                future.result()
            yield row


def load_rgb(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")), ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return None, f"cannot decode image ({error})"


def detect_by_size(detector: Detector, loaded: list[tuple[np.ndarray | None, str]]) -> list[Detection | None]:
    """Run the detector once per image size in the batch (a batch must share one size)."""
    detections: list[Detection | None] = [None] * len(loaded)
    groups: dict[tuple, list[int]] = {}
    for k, (image, _) in enumerate(loaded):
        if image is not None:
            groups.setdefault(image.shape, []).append(k)
    for indices in groups.values():
        for k, detection in zip(indices, detector.detect([loaded[k][0] for k in indices]), strict=True):
            detections[k] = detection
    return detections


@dataclass
class FaceCut:
    status: str  # detected or fallback
    detector: str  # the detector whose box was used
    box: Box  # the face
    region: tuple[int, int, int, int]  # the crop around it (margin, aspect), in the image
    image: Image.Image  # the crop, resized to ``options.size`` when set


def cut_face(
    image: np.ndarray, detection: Detection | None, fallback: FixedBoxDetector, detector_name: str, options: CropOptions
) -> FaceCut:
    """The crop ``maskcls crop`` makes of one image (shared with ``serve``)."""
    height, width = image.shape[:2]
    if detection is None or detector_name == "fixed":
        status, used, face = "fallback", "fixed", fallback.box_for(width, height)
    else:
        status, used, face = "detected", detector_name, detection.box
    aspect = options.size[0] / options.size[1] if options.size else None
    region = crop_box(face, (width, height), options.margin, aspect)
    crop = Image.fromarray(image[region[1] : region[3], region[0] : region[2]])
    if options.size:
        crop = crop.resize(options.size, Image.BILINEAR)
    return FaceCut(status, used, face, region, crop)


def crop_one(
    item: Item,
    data_path: Path,
    image: np.ndarray,
    detection: Detection | None,
    fallback: FixedBoxDetector,
    detector_name: str,
    options: CropOptions,
) -> tuple[dict, Image.Image]:
    cut = cut_face(image, detection, fallback, detector_name, options)
    row = {
        "split": item.split,
        "path": item.path,
        "status": cut.status,
        "detector": cut.detector,
        "probability": f"{detection.probability:.4f}" if cut.status == "detected" else "",
        **{name: round(value, 1) for name, value in zip(("x0", "y0", "x1", "y1"), cut.box, strict=True)},
        **dict(zip(("crop_x0", "crop_y0", "crop_x1", "crop_y1"), cut.region, strict=True)),
        "source": source_signature(data_path),
        "error": "",
    }
    return row, cut.image


def unreadable_row(item: Item, error: str, data_path: Path) -> dict:
    return {column: "" for column in BOX_COLUMNS} | {
        "split": item.split,
        "path": item.path,
        "status": "unreadable",
        "source": source_signature(data_path),
        "error": error,
    }


def save_image(image: Image.Image, target: Path) -> None:
    """Same file name, same format as the extension says; atomic."""
    fmt = "PNG" if target.suffix.lower() == ".png" else "JPEG"
    try:
        with atomic_path(target) as temporary:
            image.save(temporary, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    except OSError as error:  # named by the crop's own name, not the temporary file's
        raise OSError(error.errno, error.strerror or str(error), str(target)) from None


# --- boxes.csv: the record of every decision, and what makes a rerun resume ---------------------


def finished_paths(boxes_path: Path, data: Path, out: Path) -> set[str]:
    """Paths already done: a complete row for the same source file (size and modification
    time) whose crop is on disk, or that was found unreadable.

    boxes.csv is rewritten to hold exactly those rows (the last one per path), so a rerun
    appends only what it adds and the record never counts an image twice.
    """
    if not boxes_path.exists():
        return set()
    drop_partial_last_line(boxes_path)
    with boxes_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = {
        row["path"]: row
        for row in rows
        if row.get("source") == source_signature(data / row["path"])
        and (row["status"] == "unreadable" or (out / row["path"]).exists())
    }
    if len(kept) != len(rows):
        with atomic_path(boxes_path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=BOX_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept.values())
    return set(kept)


def source_signature(path: Path) -> str:
    """Size and modification time: a regenerated or edited source image is cropped again."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def check_settings(out: Path, options: CropOptions, data: Path) -> None:
    """A rerun into OUT must use the settings OUT was made with (else crops would mix). The
    settings also name the folder of the whole photos (``PHOTOS_KEY``, where ``predict
    --group-people`` reads each photo's setting); a rerun from a moved folder updates it."""
    settings = {
        "detector": options.detector,
        "margin": options.margin,
        "size": list(options.size) if options.size else None,
        "detector_options": options.detector_options,
    }
    path = out / SETTINGS_JSON
    before = read_json(path) if path.exists() else None
    if before is not None:
        changed = sorted(key for key in settings if before.get(key) != settings[key])
        if changed:
            raise UserError(
                f"{out} was cropped with other settings ({', '.join(changed)}): pick another folder or pass --overwrite"
            )
    settings[PHOTOS_KEY] = str(data.resolve())
    if before != settings:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, settings)


def whole_photos_folder(cropped: Path) -> Path | None:
    """The folder of the whole photos a crop folder was cut from, as its ``crop.json`` names it;
    None for whole photos, or crops made before it was recorded."""
    settings = read_crop_settings(cropped / SETTINGS_JSON)
    return Path(settings[PHOTOS_KEY]) if settings and settings.get(PHOTOS_KEY) else None


def drop_partial_last_line(path: Path) -> None:
    """A run killed while appending may leave half a row: cut it, so appending starts clean."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with atomic_path(path) as temporary:
            temporary.write_bytes(data[: data.rfind(b"\n") + 1])


class BoxesCsv:
    """Append rows to boxes.csv (header first when new), flushed row by row."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> BoxesCsv:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.handle = self.path.open("a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=BOX_COLUMNS)
        if new:
            self.writer.writeheader()
        return self

    def writerow(self, row: dict) -> None:
        self.writer.writerow(row)
        self.handle.flush()

    def __exit__(self, *exc) -> None:
        self.handle.close()


def count_statuses(boxes_path: Path) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    if boxes_path.exists():
        with boxes_path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                counts.setdefault(row["split"], Counter())[row["status"]] += 1
    return counts


def copy_tables(data: Path, out: Path) -> None:
    """train.csv and info.csv unchanged; truth/ (answers, for scoring only) as opaque files."""
    for folder in ("train/images", "eval/images"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for relative in COPIED:
        if (data / relative).exists():
            with atomic_path(out / relative) as temporary:
                shutil.copyfile(data / relative, temporary)
    if (data / "truth").is_dir():
        shutil.copytree(data / "truth", out / "truth", dirs_exist_ok=True)


def crop_mismatch(trained_on: Path, data_root: Path) -> str | None:
    """Why the photos in ``data_root`` are not cut like the ones a model was trained on (its run's
    ``crop.json``, ``trained_on``), with the fix; None when they match."""
    trained = read_crop_settings(trained_on)
    given = read_crop_settings(data_root / SETTINGS_JSON)
    if trained is None and given is None:
        return None
    if given is None:
        size = f" --size {'x'.join(map(str, trained['size']))}" if trained.get("size") else ""
        command = f"maskcls crop {data_root} OUT{size} --margin {trained['margin']}"
        return f"was trained on face crops ({trained['detector']}) but {data_root} holds whole photos: `{command}`"
    if trained is None:
        return f"was trained on whole photos but {data_root} holds face crops: predict on the uncropped folder"
    changed = [key for key in CROP_KEYS if trained.get(key) != given.get(key)]
    if changed:
        shown = ", ".join(f"{key} {trained.get(key)} vs {given.get(key)}" for key in changed)
        return f"was trained on crops made otherwise than {data_root}'s ({shown}): crop again with the run's settings"
    return None


def read_crop_settings(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None
