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
from maskcls.labels import Mask, mask_from_stem

FOUND_IOU = 0.5  # a face counts as found when the detector's box overlaps the true one this much
STATE_NAMES = {Mask.WEAR: "worn", Mask.INCORRECT: "incorrect", Mask.NOT_WEAR: "none"}


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


def detection_table(data: Path, detector: Detector, paths: list[str] | None = None, batch: int = 32) -> pd.DataFrame:
    """One row per photo: path, mask state, true box, the detector's box (None when it found
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
            "truth": truth,
            "box": [d.box if d else None for d in found],
            "iou": [box_iou(d.box, t) if d else 0.0 for d, t in zip(found, truth, strict=True)],
        }
    )
    table["found"] = table["iou"] >= FOUND_IOU
    return table


def rates_by_state(table: pd.DataFrame) -> pd.DataFrame:
    """Per mask state (and all): photos, share found, share with any box, mean IoU of the found."""
    rows = []
    parts = [(STATE_NAMES[s], table[table["state"] == s]) for s in STATE_NAMES] + [("all", table)]
    for name, part in parts:
        rows.append(
            {
                "mask state": name,
                "photos": len(part),
                "found": part["found"].mean(),
                "any box": part["box"].notna().mean(),
                "mean IoU found": part.loc[part["found"], "iou"].mean(),
            }
        )
    return pd.DataFrame(rows).set_index("mask state")
