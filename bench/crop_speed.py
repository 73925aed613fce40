"""Face detection on a synthetic set: speed and quality of each detector setting.

    .venv/bin/python bench/crop_speed.py [--data demo-data] [--images 350]

Prints images/s, detection rate (IoU >= 0.5) and mean IoU against the synthetic truth boxes for MTCNN run
naively (full resolution, default minimum face, one image per call) and as `maskcls crop`
runs it (half resolution, 60 px minimum face, batches), and for the fixed fallback box; then
the whole crop job's throughput (decode + detect + crop + save). Reads truth/: an evaluation
of the tool, not a training path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from maskcls.evaluation.detection import FOUND_IOU
from maskcls.faces.crop import CropOptions, crop_dataset
from maskcls.faces.detectors import create_detector
from maskcls.faces.geometry import box_iou
from maskcls.synth.generate import SynthSpec, generate_dataset

SETTINGS = {
    "mtcnn naive (scale 1, min face 20, batch 1)": ({"detect_scale": 1.0, "min_face_size": 20}, 1),
    "mtcnn crop default (scale 0.5, min face 60, batch 32)": ({"detect_scale": 0.5, "min_face_size": 60}, 32),
}


def evaluate(detector, images, truth, batch) -> tuple[float, float, float, dict]:
    started = time.perf_counter()
    found = []
    for k in range(0, len(images), batch):
        found += detector.detect(images[k : k + batch])
    seconds = time.perf_counter() - started
    overlaps = np.array([box_iou(d.box, t) if d else 0.0 for d, t in zip(found, truth, strict=True)])
    hit = overlaps >= FOUND_IOU
    return len(images) / seconds, hit.mean(), overlaps[hit].mean() if hit.any() else 0.0, hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synthetic dataset (default: generate one)")
    parser.add_argument("--images", type=int, default=350)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or generate_dataset(Path(scratch) / "data", SynthSpec(people=60, seed=1)).root
        boxes = pd.read_csv(data / "truth/boxes.csv").sample(frac=1, random_state=0).head(args.images)
        images = [np.asarray(Image.open(data / p).convert("RGB")) for p in boxes["path"]]
        truth = boxes[["x0", "y0", "x1", "y1"]].to_numpy(float)
        stems = np.array([Path(p).stem.lower() for p in boxes["path"]])
        kinds = {"mask1-5": np.char.startswith(stems, "mask"), "incorrect": stems == "incorrect_mask",
                 "normal": stems == "normal"}  # fmt: skip
        print(f"{len(images)} images from {data}")
        print(f"{'setting':58s} {'img/s':>7s} {'found':>6s} {'IoU':>5s}  found by mask state")
        for name, (options, batch) in [*SETTINGS.items(), ("fixed box", ({}, 32))]:
            detector = create_detector("fixed" if name == "fixed box" else "mtcnn", **options)
            speed, rate, mean_iou, hit = evaluate(detector, images, truth, batch)
            by_kind = "  ".join(f"{k} {hit[m].mean():.0%}" for k, m in kinds.items())
            print(f"{name:58s} {speed:7.1f} {rate:6.1%} {mean_iou:5.2f}  {by_kind}")
        out = Path(scratch) / "crops"
        summary = crop_dataset(data, out, CropOptions(limit=args.images))
        print(f"crop job (decode + detect + crop + save): {summary.images_per_second:.1f} images/s")


if __name__ == "__main__":
    main()
