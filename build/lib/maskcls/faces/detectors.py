"""Face detectors behind one small interface, by name: ``create_detector("mtcnn")``.

A detector takes a batch of RGB images (uint8 arrays, H x W x 3, all the same size) and returns,
per image, the most probable face as a :class:`Detection`, or None when it finds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from maskcls.errors import UserError
from maskcls.registry import Registry

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    box: Box  # x0, y0, x1, y1 in the pixels of the image given
    probability: float


class Detector(Protocol):
    name: str

    def detect(self, images: list[np.ndarray]) -> list[Detection | None]: ...


DETECTORS: Registry[Detector] = Registry("detector")


def create_detector(name: str, **kwargs) -> Detector:
    return DETECTORS.create(name, **kwargs)


@DETECTORS.register("fixed")
class FixedBoxDetector:
    """The fallback: a fixed region where faces usually are in the competition's 384x512 photos.

    ``center`` and ``size`` are fractions of the image width and height.
    """

    name = "fixed"

    def __init__(self, center: tuple[float, float] = (0.5, 0.42), size: tuple[float, float] = (0.5, 0.4)):
        self.center, self.size = center, size

    def box_for(self, width: int, height: int) -> Box:
        cx, cy = self.center[0] * width, self.center[1] * height
        half_w, half_h = self.size[0] * width / 2, self.size[1] * height / 2
        return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)

    def detect(self, images: list[np.ndarray]) -> list[Detection | None]:
        return [Detection(self.box_for(image.shape[1], image.shape[0]), 0.0) for image in images]


@DETECTORS.register("mtcnn")
class MTCNNDetector:
    """facenet-pytorch's MTCNN with its bundled weights, on the GPU when there is one.

    Speed on a CPU comes from detecting on a downscaled copy (``detect_scale``) and from a
    larger ``min_face_size`` (in pixels of the original image): both shrink the image pyramid,
    the costly part. Boxes are scaled back to the original image.
    """

    name = "mtcnn"

    def __init__(
        self,
        detect_scale: float = 0.5,
        min_face_size: int = 60,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        device: str | None = None,
    ):
        import torch

        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise UserError(
                "the mtcnn detector needs facenet-pytorch, which is not installed: pip install "
                "facenet-pytorch==2.5.3 (maskcls depends on it; 2.6.0 would downgrade torch), or use the fixed detector"
            ) from None
        if not 0 < detect_scale <= 1:
            raise UserError(f"detect_scale must be in (0, 1], got {detect_scale}")
        if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device={device}: this machine has no CUDA device; use cpu")
        self.detect_scale = detect_scale
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = MTCNN(
            keep_all=True,
            min_face_size=max(12, round(min_face_size * detect_scale)),
            thresholds=list(thresholds),
            device=device,
        )

    def detect(self, images: list[np.ndarray]) -> list[Detection | None]:
        if not images:
            return []
        small = [downscale(image, self.detect_scale) for image in images]
        if min(small[0].shape[:2]) < self.model.min_face_size:
            return [None] * len(images)  # smaller than the smallest face looked for (MTCNN would fail)
        boxes, probabilities = self.model.detect(np.stack(small))
        return [self.best(b, p) for b, p in zip(boxes, probabilities, strict=True)]

    def best(self, boxes, probabilities) -> Detection | None:
        if boxes is None or len(boxes) == 0:
            return None
        k = int(np.argmax(probabilities))
        return Detection(tuple(float(v) / self.detect_scale for v in boxes[k]), float(probabilities[k]))


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
