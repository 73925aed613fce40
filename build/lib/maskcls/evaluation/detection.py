"""How well a detector finds the true faces of a synthetic set, per mask state.

Reads the synthetic answers (``truth/boxes.csv``, ``truth/eval.csv``, ``truth/corruptions.csv``):
an evaluation of the generator and the detector (``bench/detection.py``, tests), never a
training path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from maskcls.data.layout import read_dataset
from maskcls.faces.detectors import Detector
from maskcls.faces.geometry import box_iou
from maskcls.labels import AGE_GROUP_NAMES, MASK_NAMES, Mask, age_groups

FOUND_IOU = 0.5  # a face counts as found when the detector's box overlaps the true one this much


def photo_truth(data: Path) -> pd.DataFrame:
    """Per photo path: the mask state it shows and the person's true age. Training photos as the
    layout reader names them, with the incorrect/normal swaps of ``truth/corruptions.csv`` put
    right (the folder's age is never planted wrong); eval photos from the answers."""
    dataset = read_dataset(data)
    corruptions = pd.read_csv(data / "truth/corruptions.csv")
    swapped = corruptions.loc[corruptions["kind"] == "swap_incorrect_normal", "profile"]
    train = dataset.train[["path", "mask", "age"]].copy()
    in_swap = dataset.train["profile"].isin(swapped) & (train["mask"] != Mask.WEAR)
    train.loc[in_swap, "mask"] = Mask.INCORRECT + Mask.NOT_WEAR - train.loc[in_swap, "mask"]
    answers = pd.read_csv(data / "truth/eval.csv", usecols=["ImageID", "mask", "age"])
    evaluation = dataset.eval.merge(answers, on="ImageID")[["path", "mask", "age"]]
    return pd.concat([train, evaluation]).rename(columns={"mask": "state"}).set_index("path")


def detection_table(data: Path, detector: Detector, paths: list[str] | None = None, batch: int = 32) -> pd.DataFrame:
    """One row per photo: path, mask state, true age, true box, the detector's box (None when it
    found nothing), its IoU with the true box (0 when none) and whether that counts as found."""
    boxes = pd.read_csv(data / "truth/boxes.csv").set_index("path")
    paths = list(boxes.index) if paths is None else list(paths)
    truth = [tuple(box) for box in boxes.loc[paths, ["x0", "y0", "x1", "y1"]].to_numpy(float)]
    found = []
    for k in range(0, len(paths), batch):
        found += detector.detect([np.asarray(Image.open(data / p).convert("RGB")) for p in paths[k : k + batch]])
    table = photo_truth(data).loc[paths].reset_index()
    table["truth"] = truth
    table["box"] = [d.box if d else None for d in found]
    table["iou"] = [box_iou(d.box, t) if d else 0.0 for d, t in zip(found, truth, strict=True)]
    table["found"] = table["iou"] >= FOUND_IOU
    return table


def rates_by_state(table: pd.DataFrame) -> pd.DataFrame:
    """Per mask state (and all): photos, share found, share with any box, mean IoU of the found."""
    return rates(table, [(MASK_NAMES[s], table["state"] == s) for s in MASK_NAMES], "mask state")


def rates_by_age_group(table: pd.DataFrame) -> pd.DataFrame:
    """The same per age group (<30, 30-59, 60+): a detector that misses old faces crops them worse."""
    groups = age_groups(table["age"].to_numpy())
    return rates(table, [(name, groups == group) for group, name in AGE_GROUP_NAMES.items()], "age group")


def rates(table: pd.DataFrame, parts: list[tuple[str, pd.Series]], title: str) -> pd.DataFrame:
    """One row per named part of ``table`` (a boolean row selection) and one for all rows."""
    rows = []
    for name, part in [(name, table[selected]) for name, selected in parts] + [("all", table)]:
        rows.append(
            {
                title: name,
                "photos": len(part),
                "found": part["found"].mean(),
                "any box": part["box"].notna().mean(),
                "mean IoU found": part.loc[part["found"], "iou"].mean(),
            }
        )
    return pd.DataFrame(rows).set_index(title)
