"""Damage each file a user's pipeline depends on, run the command that reads it, and tabulate
what happens: the exit code and the first line of the message (or "rebuilt" / "resumed").

    .venv/bin/python bench/fault_table.py [--work DIR]

A small synthetic set is cropped (fixed box), cross-validated (2 folds, tiny model), predicted
and calibrated once; each fault is then applied to a copy and the reading command run on it.
Nothing here passes or fails: it prints the table the note quotes. Every fault must end in a
one-line message naming the file (exit 1) or in a warning and a rebuilt/ignored file (exit 0),
never in a traceback.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

BIN = str(Path(sys.executable).parent / "maskcls")
RECIPE = """name: ft
model: {name: test_resnet, head: multi, age_head: distribution}
train: {epochs: 2, image_size: [24, 32], batch_size: 32}
"""


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x13 not what it should be \xff" * 7)


def prepare(work: Path) -> None:
    from maskcls.synth.generate import SynthSpec, generate_dataset

    generate_dataset(work / "data", SynthSpec(people=16, eval_people=6, seed=4), workers=1)
    (work / "recipe.yaml").write_text(RECIPE)
    for command in (
        ["crop", "data", "faces", "--detector", "fixed", "--size", "48x64", "-q"],
        ["cv", "recipe.yaml", "--data", "faces", "--folds", "2", "-q"],
        ["predict", "runs/ft-cv2", "--data", "faces", "--backend", "torch", "-q"],
        ["calibrate", "runs/ft-cv2"],
    ):
        subprocess.run([BIN, *command], cwd=work, check=True, capture_output=True)


FAULTS: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("truncated best.pt", lambda w: cut(w / "runs/ft-cv2/fold0/best.pt"),
     ["predict", "runs/ft-cv2", "--data", "faces", "--backend", "torch", "-q"]),
    ("truncated last.pt, resume", lambda w: cut(w / "runs/ft-cv2/fold0/last.pt"),
     ["train", "--resume", "runs/ft-cv2/fold0", "-q"]),
    ("garbage image cache", lambda w: [garbage(p) for p in (w / "runs/cache").glob("*.npy")],
     ["train", "recipe.yaml", "--data", "faces", "-o", "train.epochs=1", "-q"]),
    ("test probabilities cut mid-line", lambda w: cut(w / "runs/ft-cv2/test_probabilities.csv", 0.6),
     ["ensemble", "runs/ft-cv2", "--out", "x.csv"]),
    ("out-of-fold probabilities cut", lambda w: cut(w / "runs/ft-cv2/oof_probabilities.csv", 0.6),
     ["calibrate", "runs/ft-cv2"]),
    ("calibration.json garbage", lambda w: garbage(w / "runs/ft-cv2/calibration.json"),
     ["ensemble", "runs/ft-cv2", "--calibration", "runs/ft-cv2/calibration.json", "--out", "x.csv"]),
    ("submission.csv cut", lambda w: cut(w / "runs/ft-cv2/submission.csv", 0.5),
     ["score", "runs/ft-cv2/submission.csv", "--truth", "data"]),
    ("cv.json garbage", lambda w: garbage(w / "runs/ft-cv2/cv.json"), ["runs", "--dir", "runs"]),
    ("group.json cut", lambda w: cut(w / "runs/ft-cv2/group.json"),
     ["predict", "runs/ft-cv2", "--data", "faces", "-q"]),
    ("recipe YAML broken", lambda w: (w / "recipe.yaml").write_text("model: {name: test_resnet\ntrain: [\n"),
     ["train", "recipe.yaml", "--data", "faces", "-q"]),
    ("boxes.csv last line cut (crop killed)", lambda w: cut(w / "faces/boxes.csv", 0.97),
     ["crop", "data", "faces", "--detector", "fixed", "--size", "48x64", "-q"]),
    ("a training photo garbage", lambda w: garbage(next((w / "faces/train/images").rglob("mask2.jpg"))),
     ["train", "recipe.yaml", "--data", "faces", "-o", "train.epochs=1", "-o", "data.cache=false", "-q"]),
    ("an eval photo garbage", lambda w: garbage(next((w / "faces/eval/images").glob("*.jpg"))),
     ["predict", "runs/ft-cv2", "--data", "faces", "--backend", "torch", "--out", "x", "-q"]),
    ("eval info.csv cut", lambda w: cut(w / "faces/eval/info.csv", 0.5),
     ["predict", "runs/ft-cv2", "--data", "faces", "--backend", "torch", "-q"]),
]  # fmt: skip


def outcome(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or "") + (result.stdout or "")
    if "Traceback" in text:
        return "TRACEBACK"
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("maskcls:")]
    errors = [line for line in lines if line.startswith("maskcls: error:")]
    shown = errors or lines
    return shown[0][:160] if shown else ("ok" if result.returncode == 0 else text.strip()[:160])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    base = args.work or Path(tempfile.mkdtemp(prefix="maskcls-faults-"))
    prepared = base / "prepared"
    if not (prepared / "runs/ft-cv2/calibration.json").exists():
        shutil.rmtree(prepared, ignore_errors=True)
        prepared.mkdir(parents=True)
        prepare(prepared)
    print("| fault | command | exit | what the user sees |\n|---|---|---|---|")
    for name, damage, command in FAULTS:
        work = base / "case"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(prepared, work, symlinks=True)
        damage(work)
        result = subprocess.run([BIN, *command], cwd=work, capture_output=True, text=True)
        shown = outcome(result).replace("|", "\\|").replace(str(work) + "/", "")
        print(f"| {name} | `maskcls {command[0]}` | {result.returncode} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
