"""Turning a face box into a crop box: expand by a margin, match an aspect ratio, clip."""

from __future__ import annotations

Box = tuple[float, float, float, float]


def crop_box(
    face: Box, image_size: tuple[int, int], margin: float = 0.3, aspect: float | None = None
) -> tuple[int, int, int, int]:
    """Integer crop box around ``face``.

    ``margin`` widens each side by that fraction of the face's width (left/right) and height
    (top/bottom). ``aspect`` (width / height), when given, grows the shorter side so that a
    later resize does not distort the face. The box is then shifted and clipped to the image.
    """
    width, height = image_size
    x0, y0, x1, y1 = face
    face_w, face_h = max(1.0, x1 - x0), max(1.0, y1 - y0)
    x0, x1 = x0 - margin * face_w, x1 + margin * face_w
    y0, y1 = y0 - margin * face_h, y1 + margin * face_h
    if aspect:
        x0, y0, x1, y1 = match_aspect((x0, y0, x1, y1), aspect)
    x0, x1 = fit_interval(x0, x1, width)
    y0, y1 = fit_interval(y0, y1, height)
    return round(x0), round(y0), round(x1), round(y1)


def match_aspect(box: Box, aspect: float) -> Box:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def fit_interval(start: float, end: float, limit: int) -> tuple[float, float]:
    """Shift [start, end] inside [0, limit] where it fits, else clip it."""
    length = end - start
    if length >= limit:
        return 0.0, float(limit)
    if start < 0:
        return 0.0, length
    if end > limit:
        return limit - length, float(limit)
    return start, end


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 when either is empty."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
