"""Helpers the tests share: tiny datasets in the competition layout, the tiny recipe every
training test starts from, and running the CLI in-process."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from maskcls.cli import main
from maskcls.labels import MASK_STEMS


def write_image(path: Path, colour=(120, 90, 60), size=(12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
    return path


def make_layout(root: Path, profiles: list[str], eval_names: list[str] = ("a" * 40 + ".jpg",)) -> Path:
    """A minimal, valid competition folder: tiny images, one row per profile."""
    rows = []
    for folder in profiles:
        person_id, gender, race, age = folder.split("_")
        rows.append({"id": person_id, "gender": gender, "race": race, "age": age, "path": folder})
        for stem in MASK_STEMS:
            write_image(root / "train/images" / folder / f"{stem}.jpg")
    write_csv(root / "train/train.csv", ["id", "gender", "race", "age", "path"], rows)
    for name in eval_names:
        write_image(root / "eval/images" / name)
    write_csv(root / "eval/info.csv", ["ImageID", "ans"], [{"ImageID": n, "ans": 0} for n in eval_names])
    return root


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def tiny_config(data, tmp_path, *overrides):
    """A recipe that trains in seconds on a tiny synthetic set: 1 epoch of a tiny network at 24x32."""
    from maskcls.config import load_config

    return load_config(
        None,
        [
            f"data.root={data}", "model.name=test_resnet", "train.epochs=1", "train.image_size=[24,32]",
            f"train.cache_dir={tmp_path / 'cache'}", "train.batch_size=32", "train.folds=3", "name=cvt",
            *overrides,
        ],
    )  # fmt: skip


def run_cli(*args, capsys):
    """Run ``maskcls ARGS`` in this process; returns (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def empty_recipe(tmp_path):
    """A recipe file that keeps every default (the tests set what they need with -o)."""
    path = tmp_path / "recipe.yaml"
    path.write_text("name: t\n")
    return path


def train_args(synth_small, tmp_path, *more):
    return [
        "train", str(empty_recipe(tmp_path)), "--data", str(synth_small), "--folds", "3",
        "--runs-dir", str(tmp_path / "runs"), "-o", "model.name=test_resnet", "-o", "train.image_size=[24,32]",
        "-o", "name=fb",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", *more,
    ]  # fmt: skip
