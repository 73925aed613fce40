"""The whole pipeline at a given size, one table: stage, wall time, images/s, peak RSS, disk written.

    python bench/full_scale.py WORK --people 2700 --eval-people 1800 [--recipe configs/cpu-demo.yaml]
        [--epochs 3] [--folds 5] [--seed 11]

synth -> crop (MTCNN) -> cv (every fold) -> predict (flip TTA, every fold's model) -> ensemble (hard
vote of the folds) -> calibrate -> ensemble with the calibration -> score. Each stage runs as its
own `maskcls` process under /usr/bin/time (wall seconds and the peak resident memory of the
process tree), and the disk it wrote is the growth of the folders it writes. The competition's
size is 2,700 training people (18,900 images) and 1,800 test people (12,600 images).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def folder_bytes(*folders: Path) -> int:
    return sum(
        path.stat().st_size for folder in folders if folder.exists() for path in folder.rglob("*") if path.is_file()
    )


def timed(command: list[str], writes: list[Path]) -> dict:
    """Run ``command`` under /usr/bin/time; wall seconds, peak RSS (MB) and bytes written."""
    before = folder_bytes(*writes)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", report.name, *command], check=True)
        wall, peak_kb = report.read().split()[-2:]
    return {
        "seconds": float(wall),
        "peak_rss_mb": round(int(peak_kb) / 1024),
        "disk_mb": round((folder_bytes(*writes) - before) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--eval-people", type=int, default=200)
    parser.add_argument("--recipe", default=str(Path(__file__).parent.parent / "configs" / "cpu-demo.yaml"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data, faces, runs = work / "data", work / "data-faces", work / "runs"
    group = runs / f"scale-cv{args.folds}"
    train_images, test_images = args.people * 7, args.eval_people * 7
    maskcls = str(BIN / "maskcls")
    stages = [
        ("synth", [maskcls, "synth", str(data), "--people", str(args.people), "--eval-people", str(args.eval_people),
                   "--seed", str(args.seed), "--quiet", "--overwrite"], [data], train_images + test_images),
        ("crop", [maskcls, "crop", str(data), str(faces), "--size", "192x256", "--quiet"], [faces],
         train_images + test_images),
        ("cv", [maskcls, "cv", args.recipe, "--data", str(faces), "--runs-dir", str(runs), "--folds", str(args.folds),
                "-o", "name=scale", "-o", f"train.epochs={args.epochs}", "--quiet"], [runs],
         train_images * (args.folds - 1) * args.epochs + train_images * args.epochs),  # trained + validated
        ("predict", [maskcls, "predict", str(group), "--data", str(faces), "--tta", "flip", "--quiet"], [runs],
         test_images * args.folds * 2),
        ("ensemble", [maskcls, "ensemble", *(str(group / f"fold{k}") for k in range(args.folds)), "--method", "hard",
                      "--out", str(group / "submission-hard.csv")], [runs], test_images * args.folds),
        ("calibrate", [maskcls, "calibrate", str(group)], [runs], train_images),
        ("ensemble+calibration", [maskcls, "ensemble", str(group), "--calibration", str(group / "calibration.json"),
                                  "--out", str(group / "submission-calibrated.csv")], [runs], test_images),
        ("score", [maskcls, "score", str(group / "submission.csv"), str(group / "submission-hard.csv"),
                   str(group / "submission-calibrated.csv"), "--truth", str(data)], [runs], 3 * test_images),
    ]  # fmt: skip
    table = []
    for name, command, writes, images in stages:
        result = timed(command, writes)
        result = {"stage": name, **result, "images_per_s": round(images / max(result["seconds"], 1e-9), 1)}
        table.append(result)
        print(json.dumps(result), flush=True)
    total = sum(row["seconds"] for row in table)
    print(
        f"\n{args.people} train people ({train_images} images), {args.eval_people} test people ({test_images} images)"
    )
    print("| stage | seconds | images/s | peak RSS MB | disk MB |\n|---|---|---|---|---|")
    for row in table:
        cells = [row["stage"], f"{row['seconds']:.0f}", row["images_per_s"], row["peak_rss_mb"], row["disk_mb"]]
        print("| " + " | ".join(map(str, cells)) + " |")
    peak, disk = max(row["peak_rss_mb"] for row in table), sum(row["disk_mb"] for row in table)
    print(f"| total | {total:.0f} | | {peak} | {disk:.1f} |")


if __name__ == "__main__":
    main()
