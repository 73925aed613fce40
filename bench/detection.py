"""How well a face detector reads the synthetic photos: detection rate and IoU per mask state.

    .venv/bin/python bench/detection.py [--data D | --people 120 --seed 11] [--images N]
                                        [--sheet misses.png] [--misses 24]

Runs the detector exactly as `maskcls crop` runs it (MTCNN on a half-size copy, 60 px minimum
face, batches of 32) over the photos of a synthetic set (generated into a temporary folder when
--data is not given) and compares each result with the true face box in truth/boxes.csv. A
face counts as found when the detector's box overlaps the true one at IoU >= 0.5. Prints per
mask state (worn, incorrectly worn, none; the swapped training labels of
truth/corruptions.csv are put right): photos, found, any box at all, mean IoU of the found
faces, and what the fixed fallback box would give; then the same per age group. --sheet saves a contact sheet of the
hardest misses (lowest IoU first; green = true box, red = detector's box).

Reads truth/: an evaluation of the generator and the detector, not a training path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from maskcls.evaluation.detection import detection_table, rates_by_age_group, rates_by_state
from maskcls.faces.detectors import create_detector
from maskcls.faces.geometry import box_iou
from maskcls.labels import MASK_NAMES
from maskcls.synth.draw import HEIGHT, WIDTH
from maskcls.synth.generate import SynthSpec, generate_dataset


def misses_sheet(data: Path, table: pd.DataFrame, out: Path, count: int, thumb=(144, 192)) -> None:
    """The ``count`` photos with the lowest IoU, green = true box, red = detector's box."""
    worst = table.sort_values(["iou", "path"]).head(count)
    columns, label = 6, 14
    sheet = Image.new("RGB", (thumb[0] * columns, (thumb[1] + label) * -(-len(worst) // columns)), "white")
    canvas = ImageDraw.Draw(sheet)
    for k, row in enumerate(worst.itertuples()):
        left, top = (k % columns) * thumb[0], (k // columns) * (thumb[1] + label)
        with Image.open(data / row.path) as image:
            scale = thumb[0] / image.width
            tile = image.convert("RGB").resize(thumb, Image.BILINEAR)
        draw = ImageDraw.Draw(tile)
        draw.rectangle([v * scale for v in row.truth], outline=(0, 200, 0), width=2)
        if row.box is not None:
            draw.rectangle([v * scale for v in row.box], outline=(230, 0, 0), width=2)
        sheet.paste(tile, (left, top + label))
        canvas.text((left + 2, top + 1), f"{MASK_NAMES[row.state]} IoU {row.iou:.2f}", fill="black")
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
        paths = pd.read_csv(data / "truth/boxes.csv")["path"]
        if args.images:
            paths = paths.sample(n=min(args.images, len(paths)), random_state=0)
        started = time.perf_counter()
        table = detection_table(data, create_detector("mtcnn"), list(paths))
        seconds = time.perf_counter() - started
        fixed = create_detector("fixed").box_for(WIDTH, HEIGHT)
        table["fixed_iou"] = [box_iou(fixed, t) for t in table["truth"]]
        rates = rates_by_state(table)
        by_state = [table.loc[table["state"] == s, "fixed_iou"].mean() for s in MASK_NAMES]
        rates["fixed box IoU"] = [*by_state, table["fixed_iou"].mean()]
        print(f"{len(table)} photos of {data}; MTCNN as `crop` runs it (decode + detect): {len(table) / seconds:.1f}/s")
        shares = {"found": "{:.1%}".format, "any box": "{:.1%}".format}
        print(rates.to_string(formatters=shares, float_format="{:.3f}".format))
        print(rates_by_age_group(table).to_string(formatters=shares, float_format="{:.3f}".format))
        if args.sheet:
            misses_sheet(data, table, args.sheet, args.misses)
            print(f"hardest misses: {args.sheet}")


if __name__ == "__main__":
    main()
