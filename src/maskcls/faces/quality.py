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

from maskcls.faces.detectors import Detector
from maskcls.faces.geometry import box_iou
from maskcls.labels import Mask, age_groups, mask_from_stem

FOUND_IOU = 0.5  # a face counts as found when the detector's box overlaps the true one this much
STATE_NAMES = {Mask.WEAR: "worn", Mask.INCORRECT: "incorrect", Mask.NOT_WEAR: "none"}
AGE_GROUP_NAMES = ("<30", "30-59", "60+")


def shown_states(data: Path, paths: list[str]) -> list[Mask]:
    """The mask state each photo shows: its file name's, put right where truth/ says the
    incorrect/normal labels of a training person were swapped; eval photos from the answers."""
    corruptions = pd.read_csv(data / "truth/corruptions.csv")
    swapped = set(corruptions.loc[corruptions["kind"] == "swap_incorrect_normal", "profile"])
    eval_masks = pd.read_csv(data / "truth/eval.csv").set_index("ImageID")["mask"]
    states = []
    for path in paths:
        parts = Path(path).parts
        if parts[0] == "eval":
            states.append(Mask(int(eval_masks[parts[-1]])))
            continue
        state = mask_from_stem(Path(path).stem)
        if parts[-2] in swapped and state != Mask.WEAR:
            state = Mask.NOT_WEAR if state == Mask.INCORRECT else Mask.INCORRECT
        states.append(state)
    return states


def true_ages(data: Path, paths: list[str]) -> list[int]:
    """The age of the person in each photo: the training folder's (never planted wrong), the answers' for eval."""
    eval_ages = pd.read_csv(data / "truth/eval.csv").set_index("ImageID")["age"]
    ages = []
    for path in paths:
        parts = Path(path).parts
        ages.append(int(eval_ages[parts[-1]]) if parts[0] == "eval" else int(parts[-2].rsplit("_", 1)[1]))
    return ages


def detection_table(data: Path, detector: Detector, paths: list[str] | None = None, batch: int = 32) -> pd.DataFrame:
    """One row per photo: path, mask state, true age, true box, the detector's box (None when it found
    nothing), its IoU with the true box (0 when none) and whether that counts as found."""
    boxes = pd.read_csv(data / "truth/boxes.csv").set_index("path")
    paths = list(boxes.index) if paths is None else list(paths)
    truth = [tuple(map(float, boxes.loc[p, ["x0", "y0", "x1", "y1"]])) for p in paths]
    found = []
    for k in range(0, len(paths), batch):
        found += detector.detect([np.asarray(Image.open(data / p).convert("RGB")) for p in paths[k : k + batch]])
    table = pd.DataFrame(
        {
            "path": paths,
            "state": shown_states(data, paths),
            "age": true_ages(data, paths),
            "truth": truth,
            "box": [d.box if d else None for d in found],
            "iou": [box_iou(d.box, t) if d else 0.0 for d, t in zip(found, truth, strict=True)],
        }
    )
    table["found"] = table["iou"] >= FOUND_IOU
    return table


def rates_by_state(table: pd.DataFrame) -> pd.DataFrame:
    """Per mask state (and all): photos, share found, share with any box, mean IoU of the found."""
    return rates(table, [(STATE_NAMES[s], table["state"] == s) for s in STATE_NAMES], "mask state")


def rates_by_age_group(table: pd.DataFrame) -> pd.DataFrame:
    """The same per age group (<30, 30-59, 60+): a detector that misses old faces crops them worse."""
    groups = age_groups(table["age"].to_numpy())
    return rates(table, [(name, groups == k) for k, name in enumerate(AGE_GROUP_NAMES)], "age group")


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
