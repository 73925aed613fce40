"""``synth --quirks``: plant the real data's oddities and problems, so the reader is exercised.

Harmless quirks (handled silently): .png/.jpeg/.JPG files, macOS ``._*`` files, hidden folders,
a duplicated id, an id that is not a number. Problems (reported; strict mode stops on them): a
missing image, an extra image, an unknown file name, a truncated JPEG, a folder without a
train.csv row, a row without a folder, a folder name that does not parse, an eval image that is
missing and an ImageID that tries to leave the folder. ``truth/meta.json`` lists what was planted.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

from maskcls.files import write_csv_atomic
from maskcls.synth.people import Profile

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


def name_quirks(train: list[Profile]) -> list[Profile]:
    """Quirks decided before the images are drawn: ids and file extensions."""
    train = list(train)
    train[2] = with_id(train[2], train[1].person_id)  # two people share an id (like 003397)
    train[4] = with_id(train[4], f"{train[4].person_id}-1")  # an id that is not a number
    train[6] = with_names(train[6], {"mask2": "mask2.png", "mask3": "mask3.jpeg"})
    train[7] = with_names(train[7], {"normal": "normal.JPG"})
    return train


def with_id(profile: Profile, person_id: str) -> Profile:
    _, rest = profile.folder.split("_", 1)
    return dataclasses.replace(profile, person_id=person_id, folder=f"{person_id}_{rest}")


def with_names(profile: Profile, names: dict[str, str]) -> Profile:
    return dataclasses.replace(profile, file_names={**profile.file_names, **names})


def plant_file_quirks(root: Path, train: list[Profile], evaluation: list[Profile]) -> dict:
    """Quirks planted after drawing; returns what a reader should report."""
    images = root / "train/images"
    folder = {k: images / train[k].folder for k in range(len(train))}
    eval_images = root / "eval/images"
    first_eval = evaluation[0].file_names["mask1"]

    (folder[0] / "._mask1.jpg").write_bytes(APPLE_DOUBLE)
    (images / f"._{train[1].folder}").write_bytes(APPLE_DOUBLE)
    (eval_images / f"._{first_eval}").write_bytes(APPLE_DOUBLE)
    (images / ".ipynb_checkpoints").mkdir()
    (images / ".ipynb_checkpoints/mask1-checkpoint.jpg").write_bytes(b"")
    (folder[0] / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    (folder[8] / "normal.jpg").unlink()
    shutil.copy(folder[9] / "mask1.jpg", folder[9] / "mask1.jpeg")
    shutil.copy(folder[10] / "mask5.jpg", folder[10] / "mask6.jpg")
    truncate(folder[11] / "mask2.jpg", keep=0.4)
    (eval_images / evaluation[1].file_names["normal"]).unlink()

    bad_name = train[5].folder.rsplit("_", 1)[0]  # drops the age: does not parse
    folder[5].rename(images / bad_name)
    edit_train_csv(root, drop=train[3].folder, rename=(train[5].folder, bad_name))
    with (root / "eval/info.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["../secret.jpg", 0])

    return {
        "ignored": {"macOS ._ files": 3, "hidden files and folders": 2},
        "problems": {
            "missing_image": 1,
            "extra_image": 1,
            "unknown_stem": 1,
            "unreadable_image": 1,
            "folder_without_row": 1,
            "row_without_folder": 1,
            "bad_folder_name": 1,
            "missing_eval_image": 1,
            "bad_image_id": 1,
        },
        "train_people_readable": len(train) - 2,
        "train_images_readable": 7 * (len(train) - 2) - 2,
        "eval_images_readable": 7 * len(evaluation) - 1,
        "duplicate_id": train[1].person_id,
        "non_numeric_id": train[4].person_id,
    }


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def edit_train_csv(root: Path, drop: str, rename: tuple[str, str]) -> None:
    path = root / "train/train.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [row for row in rows if row["path"] != drop]
    for row in rows:
        if row["path"] == rename[0]:
            row["path"] = rename[1]
    rows.append({"id": "999999", "gender": "female", "race": "Asian", "age": "33", "path": "999999_female_Asian_33"})
    write_csv_atomic(path, ["id", "gender", "race", "age", "path"], rows)
