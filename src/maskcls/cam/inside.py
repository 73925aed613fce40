"""How much of a map lies on the face: the share of its mass inside the true face box of a
synthetic set (``truth/boxes.csv``, in the original photo's pixels), and for the mask head inside
the face's lower half, where a mask is worn. Evaluation only: training never reads ``truth/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from maskcls.faces.crop import BOXES_CSV, SETTINGS_JSON

TRUTH_BOXES = Path("truth") / "boxes.csv"


def has_face_boxes(data_root: str | Path) -> bool:
    return (Path(data_root) / TRUTH_BOXES).exists()


def face_boxes(data_root: str | Path, paths: list[str], size: tuple[int, int]) -> np.ndarray:
    """The true face box of each photo in the model's input pixels (``size`` = width, height):
    through the crop box for a cropped folder (its ``boxes.csv``), else scaled from the photo's own
    size. (N, 4) x0, y0, x1, y1; NaN where the truth has no box for a photo."""
    root = Path(data_root)
    truth = pd.read_csv(root / TRUTH_BOXES).set_index("path")
    cropped = (root / SETTINGS_JSON).exists() and (root / BOXES_CSV).exists()
    crops = pd.read_csv(root / BOXES_CSV).set_index("path") if cropped else None
    width, height = size
    found = np.full((len(paths), 4), np.nan)
    for index, path in enumerate(paths):
        if path not in truth.index:
            continue
        box = truth.loc[path, ["x0", "y0", "x1", "y1"]].to_numpy(dtype=float)
        if crops is not None:
            left, top, right, bottom = crops.loc[path, ["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy(float)
            scale = np.array([width / (right - left), height / (bottom - top)] * 2)
            found[index] = (box - np.array([left, top, left, top])) * scale
        else:
            with Image.open(root / path) as photo:
                found[index] = box * np.array([width / photo.width, height / photo.height] * 2)
    return found


def share_inside(maps: np.ndarray, boxes: np.ndarray, lower_half: bool = False) -> np.ndarray:
    """Per map (N, H, W): its mass at pixels whose centre lies in the box (or the box's lower
    half) over its whole mass; NaN for a map without mass or a photo without a box."""
    count, height, width = maps.shape
    centres_y, centres_x = np.arange(height) + 0.5, np.arange(width) + 0.5
    shares = np.full(count, np.nan)
    for index in range(count):
        x0, y0, x1, y1 = boxes[index]
        total = maps[index].sum()
        if np.isnan(x0) or total <= 0:
            continue
        top = (y0 + y1) / 2 if lower_half else y0
        rows = (centres_y >= top) & (centres_y < y1)
        columns = (centres_x >= x0) & (centres_x < x1)
        shares[index] = maps[index][np.ix_(rows, columns)].sum() / total
    return shares
