"""How well a face detector reads the synthetic photos: detection rate and IoU per mask state.

    .venv/bin/python bench/detection.py [--data D | --people 120 --seed 11] [--images N]
                                        [--sheet misses.png] [--misses 24]

Runs the detector exactly as `maskcls crop` runs it (MTCNN on a half-size copy, 60 px minimum
face, batches of 32) over the photos of a synthetic set (generated into a temporary folder when
--data is not given) and compares each result with the true face box in truth/boxes.csv. A
face counts as found when the detector's box overlaps the true one at IoU >= 0.5. Prints per
mask state (worn, incorrectly worn, none; the swapped training labels of
truth/corruptions.csv are put right): photos, found, any box at all, mean IoU of the found
faces, and what the fixed fallback box would give. --sheet saves a contact sheet of the
hardest misses (lowest IoU first; green = true box, red = detector's box).

Reads truth/: an evaluation of the generator and the detector, not a training path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from maskcls.faces.detectors import create_detector
from maskcls.faces.geometry import box_iou
from maskcls.labels import Mask, mask_from_stem
from maskcls.synth.generate import SynthSpec, generate_dataset

FOUND_IOU = 0.5
STATES = {Mask.WEAR: "worn", Mask.INCORRECT: "incorrect", Mask.NOT_WEAR: "none"}


def shown_states(data: Path, paths: pd.Series) -> np.ndarray:
    """The mask state each photo shows: its file name's, unless truth/ says the label was swapped."""
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
    return np.array(states)


def detect_all(detector, data: Path, paths, batch: int = 32) -> tuple[list, float]:
    found, seconds = [], 0.0
    for k in range(0, len(paths), batch):
        images = [np.asarray(Image.open(data / p).convert("RGB")) for p in paths[k : k + batch]]
        started = time.perf_counter()
        found += detector.detect(images)
        seconds += time.perf_counter() - started
    return found, seconds


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, part in [*((STATES[s], table[table.state == s]) for s in STATES), ("all", table)]:
        hit = part["iou"] >= FOUND_IOU
        rows.append(
            {
                "mask state": name,
                "photos": len(part),
                "found (IoU>=0.5)": f"{hit.mean():.1%}",
                "any box": f"{part['boxed'].mean():.1%}",
                "mean IoU found": f"{part.loc[hit, 'iou'].mean():.3f}",
                "fixed box IoU": f"{part['fixed_iou'].mean():.3f}",
            }
        )
    return pd.DataFrame(rows)


def misses_sheet(data: Path, table: pd.DataFrame, out: Path, count: int, thumb=(144, 192)) -> None:
    worst = table.sort_values(["iou", "path"]).head(count)
    columns = 6
    rows = -(-len(worst) // columns)
    sheet = Image.new("RGB", (thumb[0] * columns, (thumb[1] + 14) * rows), "white")
    canvas = ImageDraw.Draw(sheet)
    scale = thumb[0] / 384
    for k, row in enumerate(worst.itertuples()):
        left, top = (k % columns) * thumb[0], (k // columns) * (thumb[1] + 14)
        with Image.open(data / row.path) as image:
            tile = image.convert("RGB")
        scale = thumb[0] / tile.width
        tile = tile.resize(thumb, Image.BILINEAR)
        draw = ImageDraw.Draw(tile)
        draw.rectangle([v * scale for v in row.truth], outline=(0, 200, 0), width=2)
        if row.boxed:
            draw.rectangle([v * scale for v in row.box], outline=(230, 0, 0), width=2)
        sheet.paste(tile, (left, top + 14))
        canvas.text((left + 2, top + 1), f"{STATES[row.state]} IoU {row.iou:.2f}", fill="black")
    sheet.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synthetic dataset (default: generate one)")
    parser.add_argument("--people", type=int, default=120, help="people of the generated set")
    parser.add_argument("--seed", type=int, default=11, help="seed of the generated set")
    parser.add_argument("--images", type=int, help="at most this many photos (a random sample)")
    parser.add_argument("--sheet", type=Path, help="save a contact sheet of the hardest misses here")
    parser.add_argument("--misses", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or generate_dataset(Path(scratch) / "data", SynthSpec(args.people, seed=args.seed)).root
        boxes = pd.read_csv(data / "truth/boxes.csv")
        if args.images:
            boxes = boxes.sample(n=min(args.images, len(boxes)), random_state=0)
        paths = boxes["path"].tolist()
        truth = [tuple(b) for b in boxes[["x0", "y0", "x1", "y1"]].to_numpy(float)]
        found, seconds = detect_all(create_detector("mtcnn"), data, paths)
        fixed = create_detector("fixed").box_for(384, 512)
        table = pd.DataFrame(
            {
                "path": paths,
                "state": shown_states(data, boxes["path"]),
                "truth": truth,
                "box": [d.box if d else None for d in found],
                "boxed": [d is not None for d in found],
                "iou": [box_iou(d.box, t) if d else 0.0 for d, t in zip(found, truth, strict=True)],
                "fixed_iou": [box_iou(fixed, t) for t in truth],
            }
        )
        print(f"{len(paths)} photos of {data}; MTCNN as `crop` runs it: {len(paths) / seconds:.1f} images/s")
        print(summarise(table).to_string(index=False))
        if args.sheet:
            misses_sheet(data, table, args.sheet, args.misses)
            print(f"hardest misses: {args.sheet}")


if __name__ == "__main__":
    main()
