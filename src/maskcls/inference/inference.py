"""Predicting single photos as they come (a kiosk, a web service): the training crop, then the
``predict`` preprocessing and models, one code path.

A photo goes: decode (EXIF orientation applied) -> face detector named in the run's crop
settings (fixed box when it finds none) -> crop with the same margin and size as ``maskcls crop``
-> JPEG as the cropped folder stores it -> ``load_resized`` to the model size (as predict reads
the cache) -> every model of the run or group (torch or onnxruntime), mean probabilities.
A model trained on uncropped photos gets the whole photo.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from maskcls import __version__
from maskcls.callbacks import Progress
from maskcls.cam.layers import target_layer
from maskcls.cam.maps import activation_maps, head_names, mean_maps, predicted_classes
from maskcls.cam.overlay import heat_png
from maskcls.data.cache import load_resized
from maskcls.errors import DataError, UserError
from maskcls.evaluation.calibrate import apply_calibration, calibration_for, say_if_age_uncut
from maskcls.faces.crop import SETTINGS_JSON, CropOptions, cut_face, detect_by_size, read_crop_settings
from maskcls.faces.detectors import FixedBoxDetector, create_detector
from maskcls.inference.loading import load_run, run_folders
from maskcls.inference.predict import (
    check_options,
    onnx_model,
    onnx_outputs,
    preferred_backend,
    torch_outputs,
)
from maskcls.labels import (
    AGE_ESTIMATE_COLUMN,
    HEAD_VALUE_NAMES,
    IMAGE_EXTENSIONS,
    NUM_CLASSES,
    PROBABILITY_COLUMNS,
    class_name,
    decode_classes,
    head_marginals,
    mean_outputs,
    split_outputs,
)

IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "MPO"}  # what photos arrive as; MPO is a phone JPEG


class BadImage(DataError):
    """An upload that is not a photo we can use; the message says why, ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Photo:
    name: str
    pixels: np.ndarray  # H x W x 3 uint8, upright
    encoded: bytes  # a JPEG/PNG file of exactly these pixels (the upload itself when unchanged)


@dataclass
class FacePrediction:
    face_box: list[float] | None  # x0, y0, x1, y1 in the photo's pixels; None: the whole photo
    crop_box: list[int]
    face_source: str  # detected, fallback (fixed box) or whole photo
    detector_probability: float | None
    probabilities: np.ndarray  # the 18 classes
    age_estimate: float | None = None  # years, from an ordinal, regression or distribution age head
    maps: dict[str, np.ndarray] | None = None  # per head, Grad-CAM over the crop box (the model's input size)

    def as_json(self, maps_as: str | None = None) -> dict:
        """The prediction for JSON; with ``maps_as`` (``png`` or ``array``) and maps, also each
        head's map over ``crop_box``: a base64 RGBA PNG, or rows of values in [0, 1]."""
        label = int(self.probabilities.argmax())
        by_head = head_probabilities(self.probabilities)
        extra = {}
        if maps_as is not None and self.maps is not None:
            extra["maps"] = {head: map_json(values, maps_as) for head, values in self.maps.items()}
        return {
            "face_box": self.face_box,
            "crop_box": self.crop_box,
            "face_source": self.face_source,
            "detector_probability": self.detector_probability,
            **{head: dict(zip(HEAD_VALUE_NAMES[head], values, strict=True)) for head, values in by_head.items()},
            "class": label,
            "label": class_name(label),
            "class_probability": float(self.probabilities[label]),
            "age_estimate": None if self.age_estimate is None else round(float(self.age_estimate), 1),
            **extra,
        }


MAP_FORMATS = ("png", "array")


def map_json(values: np.ndarray, form: str):
    if form == "png":
        return "data:image/png;base64," + base64.b64encode(heat_png(values)).decode("ascii")
    return np.round(values, 3).tolist()


def head_probabilities(probabilities: np.ndarray) -> dict[str, list[float]]:
    """One photo's 18-class probabilities summed to each head, rounded for JSON."""
    return {head: values[0].round(6).tolist() for head, values in head_marginals(probabilities).items()}


def decode_photo(name: str, data: bytes, max_pixels: int) -> Photo:
    """Check and decode an upload; raises :class:`BadImage` naming the file and the reason."""
    if not data:
        raise BadImage(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise BadImage(f"{name}: {image.format} images are not accepted (JPEG, PNG, WebP or BMP)", 415)
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage(f"{name}: {width}x{height} is more than the {max_pixels:,} pixels allowed", 413)
            upright = ImageOps.exif_transpose(image)
            pixels = np.asarray(upright.convert("RGB"))
            turned = has_orientation(image)
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage(f"{name}: too many pixels (decompression bomb guard)", 413) from None
    except UnidentifiedImageError:
        raise BadImage(f"{name}: not a readable image (not a format PIL knows)") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure is the upload's fault
        raise BadImage(f"{name}: not a readable image ({type(error).__name__}: {error})") from None
    return Photo(name, pixels, encode_jpeg(pixels) if turned else data)


def has_orientation(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) != 1


def encode_jpeg(pixels: np.ndarray | Image.Image) -> bytes:
    """The way ``maskcls crop`` stores a .jpg crop (quality 95)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def crop_settings(run: Path, data_root: str) -> CropOptions | None:
    """The crop the run's training images had: ``RUN/crop.json`` (copied at training time), else
    the training folder's own ``crop.json``; None when the model saw whole photos."""
    for path in (run / SETTINGS_JSON, Path(data_root) / SETTINGS_JSON):
        saved = read_crop_settings(path)
        if saved is not None:
            size = tuple(saved["size"]) if saved.get("size") else None
            return CropOptions(saved["detector"], saved["margin"], size, detector_options=saved["detector_options"])
    return None


class Predictor:
    """Every model of a run or cv group, with the face crop its training data had, and the
    group's calibration (``calibration.json``: learned age borders and class biases).

    ``calibration``: ``"auto"`` applies the source's own ``calibration.json`` when it has one
    (and says so in the log), None never, a path that file. Photos go in as files
    (:meth:`predict_paths`), pixel arrays (:meth:`predict_arrays`) or decoded uploads
    (:meth:`predict`). ``map_layer``: the layer activation maps are read from (default: the last
    feature map)."""

    def __init__(
        self,
        source: str | Path,
        backend: str = "torch",
        device: str = "auto",
        tta: str = "none",
        calibration: str | Path | None = "auto",
        map_layer: str | None = None,
    ):
        check_options(tta, backend)
        self.source, self.backend, self.tta = Path(source), backend, tta
        self.runs = run_folders([source])
        self.calibration = calibration_for([self.source], calibration)
        loaded = load_run(self.runs[0], device)
        self.config = loaded.config
        say_if_age_uncut(self.source, calibration, self.calibration, loaded.model.gives_age_estimate)
        self.image_size = loaded.image_size
        if backend == "auto":
            self.backend = backend = preferred_backend(self.runs[0], device)  # the folds share the model
        if backend == "torch":
            self.models = [loaded, *(load_run(run, device) for run in self.runs[1:])]
        else:
            self.models = [onnx_model(run, backend) for run in self.runs]
        self.crop = crop_settings(self.runs[0], self.config.data.root)
        self.detector = None
        if self.crop is not None and self.crop.detector != "fixed":
            self.detector = create_detector(self.crop.detector, **self.crop.detector_options)
        self.fallback = FixedBoxDetector()
        self.map_models = None  # torch models for activation maps, loaded on the first request for maps
        self.map_layer = map_layer
        self.lock = threading.Lock()  # one batch at a time: the models use every core already

    def predict(self, photos: list[Photo], maps: bool = False) -> list[FacePrediction]:
        """Each photo's prediction; ``maps``: with each head's class activation map of the class it
        predicts (Grad-CAM, torch models; see :mod:`maskcls.cam`)."""
        with self.lock:
            faces = self.faces(photos)
            images = np.stack([load_resized(io.BytesIO(face[1]), self.image_size) for face in faces])
            probabilities, ages = split_outputs(self.outputs(images))
            if self.calibration is not None:
                probabilities = apply_calibration(probabilities, ages, self.calibration).astype(np.float32)
            found = self.activation_maps(images, probabilities) if maps else [None] * len(faces)
        ages = [None] * len(faces) if ages is None else ages.tolist()
        return [
            FacePrediction(
                face[0]["face_box"], face[0]["crop_box"], face[0]["source"], face[0]["probability"], *row, maps=drawn
            )
            for face, row, drawn in zip(faces, zip(probabilities, ages, strict=True), found, strict=True)
        ]

    def activation_maps(self, images: np.ndarray, probabilities: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per image, each head's Grad-CAM of the class ``probabilities`` give it, averaged over
        the models (an onnxruntime predictor loads the torch models once, for this)."""
        if self.map_models is None:
            self.map_models = self.models if self.backend == "torch" else [load_run(run, "cpu") for run in self.runs]
        heads = head_names(self.map_models[0].model)
        classes = predicted_classes(probabilities, heads)
        found = []
        for loaded in self.map_models:
            batch = loaded.input_batch(images)
            _, layer = target_layer(loaded.model, batch[:1], self.map_layer)
            found.append(activation_maps(loaded.model, batch, layer, classes))
        merged = mean_maps(found) if len(found) > 1 else found[0]
        return [{head: merged[head].maps[index] for head in heads} for index in range(len(images))]

    def predict_paths(
        self, paths: list[str | Path] | str | Path, batch_size: int = 32, progress: Progress | None = None
    ) -> pd.DataFrame:
        """Photo files, or folders searched recursively for .jpg/.jpeg/.png (any case): one row per
        photo (see :func:`prediction_table`), the crop applied as the model's training data had it."""
        files = photo_files(paths)
        rows = []
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            photos = [decode_photo(str(path), read_bytes(path), PHOTO_PIXELS) for path in chunk]
            rows += self.predict(photos)
            if progress:
                progress(start + len(chunk), len(files))
        return prediction_table({"path": [str(path) for path in files]}, rows)

    def predict_arrays(self, images, names: list[str] | None = None, batch_size: int = 32) -> pd.DataFrame:
        """Photos as H x W x 3 uint8 arrays (RGB, upright), whole photos as a camera gives them."""
        images = list(images)
        names = names if names is not None else [f"image{k}" for k in range(len(images))]
        if len(names) != len(images):
            raise UserError(f"names: {len(names)} names for {len(images)} images")
        rows = []
        for start in range(0, len(images), batch_size):
            part = zip(names[start : start + batch_size], images[start : start + batch_size], strict=True)
            rows += self.predict([array_photo(name, pixels) for name, pixels in part])
        return prediction_table({"name": names}, rows)

    def faces(self, photos: list[Photo]) -> list[tuple[dict, bytes]]:
        """Per photo: where the face is, and the encoded image the model reads."""
        if self.crop is None:
            return [
                ({"face_box": None, "crop_box": full_box(photo), "source": "whole photo", "probability": None},
                 photo.encoded)
                for photo in photos
            ]  # fmt: skip
        detections = [None] * len(photos)
        if self.detector is not None:
            detections = detect_by_size(self.detector, [(photo.pixels, "") for photo in photos])
        out = []
        for photo, detection in zip(photos, detections, strict=True):
            face = cut_face(photo.pixels, detection, self.fallback, self.crop.detector, self.crop)
            where = {
                "face_box": [round(value, 1) for value in face.box],
                "crop_box": list(face.region),
                "source": face.status,
                "probability": detection.probability if face.status == "detected" else None,
            }
            out.append((where, encode_jpeg(face.image)))
        return out

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """The mean outputs of the models: 18 probabilities [+ age estimate] per image."""
        run = torch_outputs if self.backend == "torch" else onnx_outputs
        outputs = [run(model, images, len(images), self.tta).astype(np.float64) for model in self.models]
        return mean_outputs(outputs).astype(np.float32)

    def describe(self) -> dict:
        return {
            "source": str(self.source),
            "name": self.config.name,
            "runs": [str(run) for run in self.runs],
            "backend": self.backend,
            "tta": self.tta,
            "model": self.config.model.name,
            "head": self.config.model.head,
            "image_size": list(self.image_size),
            "crop": None if self.crop is None else {
                "detector": self.crop.detector, "margin": self.crop.margin,
                "size": list(self.crop.size) if self.crop.size else None,
            },
            "classes": [{"class": k, "label": class_name(k)} for k in range(NUM_CLASSES)],
            "heads": HEAD_VALUE_NAMES,
            "calibration": None if self.calibration is None else self.calibration.source,
            "version": __version__,
        }  # fmt: skip


PHOTO_PIXELS = 200_000_000  # files a user names are trusted more than uploads; still a bomb guard


def photo_files(paths: list[str | Path] | str | Path) -> list[Path]:
    """The photos ``paths`` names: files as given, folders searched recursively (sorted)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not found:
        raise UserError(f"no .jpg, .jpeg or .png photos in {', '.join(map(str, paths))}")
    return found


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None


def array_photo(name: str, pixels) -> Photo:
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise UserError(f"{name}: expected an H x W x 3 uint8 RGB array, got {pixels.dtype} {pixels.shape}")
    return Photo(name, pixels, encode_jpeg(pixels))


def prediction_table(keys: dict[str, list], predictions: list[FacePrediction]) -> pd.DataFrame:
    """One row per photo: the ``keys`` columns, class, its mask / gender / age names, the face
    source, the 18 probabilities and the age estimate (when the model makes one)."""
    probabilities = np.stack([row.probabilities for row in predictions]) if predictions else np.empty((0, NUM_CLASSES))
    table = pd.DataFrame({**keys, **class_columns(probabilities), "face": [row.face_source for row in predictions]})
    table[PROBABILITY_COLUMNS] = probabilities
    if predictions and predictions[0].age_estimate is not None:
        table[AGE_ESTIMATE_COLUMN] = [row.age_estimate for row in predictions]
    return table


def named_table(probabilities: pd.DataFrame) -> pd.DataFrame:
    """A test probabilities table (ImageID, p0..p17 [, age_estimate]) with the class and its mask /
    gender / age names after the ImageID."""
    named = pd.DataFrame({"ImageID": probabilities["ImageID"].to_numpy()})
    for column, values in class_columns(probabilities[PROBABILITY_COLUMNS].to_numpy()).items():
        named[column] = values
    return pd.concat([named, probabilities.drop(columns="ImageID").reset_index(drop=True)], axis=1)


def class_columns(probabilities: np.ndarray) -> dict[str, list]:
    """The decision of each row: class, and the names of its mask state, gender and age group."""
    classes = probabilities.argmax(axis=1)
    mask, gender, age = decode_classes(classes)
    return {
        "class": classes.tolist(),
        "mask": [HEAD_VALUE_NAMES["mask"][k] for k in mask],
        "gender": [HEAD_VALUE_NAMES["gender"][k] for k in gender],
        "age": [HEAD_VALUE_NAMES["age"][k] for k in age],
    }


def full_box(photo: Photo) -> list[int]:
    height, width = photo.pixels.shape[:2]
    return [0, 0, width, height]
