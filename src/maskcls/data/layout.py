"""Reading the competition folder exactly as competitors receive it.

``DATA/train/train.csv`` + ``DATA/train/images/<profile>/<stem>.<ext>`` -> the train table, one row
per image; ``DATA/eval/info.csv`` + ``DATA/eval/images/`` -> the eval table in info.csv order.
People are keyed by profile folder name, never by id (ids repeat and are not always numbers).
Every problem is collected as a :class:`Problem`; ``strict`` turns them into one error.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from maskcls.callbacks import Progress
from maskcls.data.corrections import apply_corrections, load_corrections
from maskcls.data.images import image_errors
from maskcls.data.problems import Problem
from maskcls.errors import DataError
from maskcls.labels import IMAGE_EXTENSIONS, MASK_STEMS, parse_gender

TRAIN_CSV = "train/train.csv"
TRAIN_IMAGES = "train/images"
EVAL_CSV = "eval/info.csv"
EVAL_IMAGES = "eval/images"
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID", "ans")

PROFILE_PATTERN = re.compile(r"^(?P<id>[^_]+)_(?P<gender>[A-Za-z]+)_(?P<race>[^_]+)_(?P<age>\d+)$")

TRAIN_TABLE_COLUMNS = ["profile", "person_id", "gender", "race", "age", "stem", "mask", "path"]
EVAL_TABLE_COLUMNS = ["ImageID", "row", "path"]


@dataclass
class Dataset:
    """A competition folder read into tables.

    ``train``: one row per image with columns :data:`TRAIN_TABLE_COLUMNS` (``gender`` and ``mask``
    as integer labels, ``age`` in years, ``path`` relative to ``root``).
    ``eval``: ``ImageID``, ``row`` (0-based position in info.csv) and ``path``, in info.csv order.
    ``ignored`` counts what was skipped on purpose (macOS ``._*`` files, hidden entries).
    """

    root: Path
    train: pd.DataFrame
    eval: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    corrections: list[str] = field(default_factory=list)

    @property
    def people(self) -> pd.DataFrame:
        """One row per profile: profile, person_id, gender, race, age."""
        columns = ["profile", "person_id", "gender", "race", "age"]
        return self.train[columns].drop_duplicates("profile").reset_index(drop=True)

    def absolute(self, relative_path: str) -> Path:
        return self.root / relative_path


def eval_image_path(image_id: str) -> str:
    """A test photo's path in the dataset folder, from its ``ImageID`` in eval/info.csv."""
    return f"{EVAL_IMAGES}/{image_id}"


def read_dataset(
    root: str | Path,
    *,
    corrections: str | Path | None = None,
    strict: bool = False,
    verify_images: bool = False,
    require_eval: bool = False,
    require_train: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Read train and eval parts of ``root``; in ``strict`` mode any problem raises DataError.
    ``require_train=False``: a folder with only ``eval/`` (a test set to predict) is fine."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    refuse_part_of_dataset(root)
    problems: list[Problem] = []
    ignored: Counter = Counter()
    if require_train or (root / TRAIN_CSV).exists():
        train = read_train_table(root, problems, ignored)
    else:
        train = pd.DataFrame(columns=TRAIN_TABLE_COLUMNS)
    eval_table = read_eval_table(root, problems, ignored, required=require_eval)
    if verify_images:
        train = drop_unreadable(root, train, problems, progress)
        eval_table = drop_unreadable(root, eval_table, problems, progress)
    applied: list[str] = []
    if corrections:
        train, applied = apply_corrections(train, load_corrections(corrections), problems)
    if strict and problems:
        raise DataError(*(str(problem) for problem in problems))
    return Dataset(root, train, eval_table, problems, ignored, applied)


# --- train -------------------------------------------------------------------------------------


def read_train_table(root: Path, problems: list[Problem], ignored: Counter) -> pd.DataFrame:
    rows = read_train_csv(root, problems)
    folders = list_profile_folders(root, problems, ignored)
    records = []
    for folder_name, row in rows.items():
        if folder_name not in folders:
            problems.append(
                Problem(
                    "row_without_folder",
                    TRAIN_CSV,
                    f"folder {folder_name!r} not found under {TRAIN_IMAGES}/",
                    row["line"],
                )
            )
            continue
        if not profile_matches_row(folder_name, row, problems):
            continue
        for stem, relative in profile_images(root, folder_name, problems, ignored).items():
            records.append(
                {
                    "profile": folder_name,
                    "person_id": row["id"],
                    "gender": int(row["gender"]),
                    "race": row["race"],
                    "age": row["age"],
                    "stem": stem,
                    "mask": int(MASK_STEMS[stem]),
                    "path": relative,
                }
            )
    for folder_name in sorted(set(folders) - set(rows)):
        problems.append(
            Problem(
                "folder_without_row",
                f"{TRAIN_IMAGES}/{folder_name}",
                f"profile folder has no row in {TRAIN_CSV}",
            )
        )
    return pd.DataFrame.from_records(records, columns=TRAIN_TABLE_COLUMNS)


def read_train_csv(root: Path, problems: list[Problem]) -> dict[str, dict]:
    """train.csv rows keyed by their ``path`` (the profile folder name), in file order."""
    path = root / TRAIN_CSV
    rows: dict[str, dict] = {}
    for line, record in read_csv_records(path, TRAIN_CSV, TRAIN_COLUMNS):
        row = parse_train_row(record, line, problems)
        if row is None:
            continue
        if row["path"] in rows:
            first = rows[row["path"]]["line"]
            problems.append(
                Problem(
                    "duplicate_row",
                    TRAIN_CSV,
                    f"folder {row['path']!r} is listed again (first on line {first})",
                    line,
                )
            )
            continue
        rows[row["path"]] = row
    return rows


def parse_train_row(record: dict[str, str], line: int, problems: list[Problem]) -> dict | None:
    def bad(message: str) -> None:
        problems.append(Problem("bad_row", TRAIN_CSV, message, line))

    folder = (record.get("path") or "").strip()
    if not folder:
        return bad("empty 'path' (the profile folder name)")
    if "/" in folder or "\\" in folder or folder in (".", ".."):
        return bad(f"path {folder!r} is not a plain folder name")
    age_text = (record.get("age") or "").strip()
    try:
        age = int(float(age_text))
    except ValueError:
        return bad(f"age {age_text!r} is not a number")
    if not 0 <= age <= 130:
        return bad(f"age {age} is outside 0..130")
    try:
        gender = parse_gender(record.get("gender") or "")
    except ValueError as error:
        return bad(str(error))
    person_id = (record.get("id") or "").strip()
    if not person_id:
        return bad("empty 'id'")
    race = (record.get("race") or "").strip()
    return {"line": line, "path": folder, "id": person_id, "gender": gender, "race": race, "age": age}


def profile_matches_row(folder_name: str, row: dict, problems: list[Problem]) -> bool:
    """The folder name repeats id, gender, race and age; it must parse and agree with the row."""
    where = f"{TRAIN_IMAGES}/{folder_name}"
    match = PROFILE_PATTERN.match(folder_name)
    if not match:
        problems.append(Problem("bad_folder_name", where, "folder name does not parse as ID_GENDER_RACE_AGE"))
        return False
    try:
        folder_gender = parse_gender(match["gender"])
    except ValueError as error:
        problems.append(Problem("bad_folder_name", where, f"folder name: {error}"))
        return False
    disagreements = [
        name
        for name, folder_value, row_value in (
            ("id", match["id"], row["id"]),
            ("gender", folder_gender, row["gender"]),
            ("age", int(match["age"]), row["age"]),
        )
        if folder_value != row_value
    ]
    if disagreements:
        problems.append(
            Problem(
                "label_mismatch",
                TRAIN_CSV,
                f"{', '.join(disagreements)} disagree(s) with folder name {folder_name!r}; using train.csv",
                row["line"],
            )
        )
    return True


def refuse_part_of_dataset(root: Path) -> None:
    """``DATA/eval`` or ``DATA/train`` given where ``DATA`` is meant: say so, naming ``DATA``."""
    parent = root.absolute().parent
    if root.name in ("train", "eval", "truth") and (parent / "train").is_dir() and (parent / "eval").is_dir():
        raise DataError(f"{root}: this is the {root.name}/ folder of a dataset; give the dataset folder {parent}")


def list_profile_folders(root: Path, problems: list[Problem], ignored: Counter) -> set[str]:
    images = root / TRAIN_IMAGES
    if not images.is_dir():
        raise DataError(f"{root / TRAIN_IMAGES}: folder not found (expected the competition layout)")
    folders = set()
    for entry in images.iterdir():
        if is_ignored_entry(entry.name, ignored):
            continue
        if entry.is_dir():
            folders.add(entry.name)
        else:
            problems.append(Problem("unexpected_file", f"{TRAIN_IMAGES}/{entry.name}", "file outside a profile folder"))
    return folders


def profile_images(root: Path, folder_name: str, problems: list[Problem], ignored: Counter) -> dict[str, str]:
    """The profile's images as ``{stem: relative path}`` in the order of MASK_STEMS."""
    folder_rel = f"{TRAIN_IMAGES}/{folder_name}"
    found: dict[str, list[str]] = {}
    for entry in sorted((root / folder_rel).iterdir()):
        if is_ignored_entry(entry.name, ignored):
            continue
        relative = f"{folder_rel}/{entry.name}"
        if entry.is_dir():
            problems.append(Problem("unexpected_folder", relative, "folder inside a profile folder"))
            continue
        stem, extension = split_image_name(entry.name)
        if extension not in IMAGE_EXTENSIONS:
            problems.append(
                Problem("not_an_image", relative, f"extension {extension or '(none)'!r} is not an image type")
            )
        elif stem not in MASK_STEMS:
            problems.append(
                Problem("unknown_stem", relative, f"unknown image name {stem!r} (expected {', '.join(MASK_STEMS)})")
            )
        else:
            found.setdefault(stem, []).append(relative)
    images = {}
    for stem in MASK_STEMS:
        paths = found.get(stem, [])
        if len(paths) > 1:
            names = ", ".join(Path(p).name for p in paths)
            problems.append(
                Problem("extra_image", folder_rel, f"{stem} appears {len(paths)} times ({names}); using the first")
            )
        if paths:
            images[stem] = paths[0]
    missing = [stem for stem in MASK_STEMS if stem not in images]
    if missing:
        problems.append(Problem("missing_image", folder_rel, f"missing image(s): {', '.join(missing)}"))
    return images


def split_image_name(name: str) -> tuple[str, str]:
    """``'Mask1.JPG'`` -> ("mask1", ".jpg"): stems and extensions compare case-insensitively."""
    path = Path(name)
    return path.stem.lower(), path.suffix.lower()


def is_ignored_entry(name: str, ignored: Counter) -> bool:
    """macOS resource forks (``._x``) and hidden entries (``.ipynb_checkpoints``) are skipped."""
    if name.startswith("._"):
        ignored["macOS ._ files"] += 1
        return True
    if name.startswith("."):
        ignored["hidden files and folders"] += 1
        return True
    return False


# --- eval --------------------------------------------------------------------------------------


def read_eval_table(root: Path, problems: list[Problem], ignored: Counter, *, required: bool = False) -> pd.DataFrame:
    csv_path = root / EVAL_CSV
    if not csv_path.exists() and not required:
        return pd.DataFrame(columns=EVAL_TABLE_COLUMNS)
    on_disk = list_eval_images(root, ignored)
    records = []
    seen: dict[str, int] = {}
    for row_index, (line, record) in enumerate(read_csv_records(csv_path, EVAL_CSV, EVAL_COLUMNS)):
        image_id = (record.get("ImageID") or "").strip()
        problem = image_id_problem(image_id, seen, on_disk)
        if problem:
            problems.append(Problem(problem[0], EVAL_CSV, problem[1], line))
        else:
            records.append({"ImageID": image_id, "row": row_index, "path": eval_image_path(image_id)})
        seen.setdefault(image_id, line)
    listed = set(seen)
    unlisted = sum(1 for name in on_disk if name not in listed)
    if unlisted:
        ignored["eval images not listed in info.csv"] += unlisted
    return pd.DataFrame.from_records(records, columns=EVAL_TABLE_COLUMNS)


def image_id_problem(image_id: str, seen: dict[str, int], on_disk: set[str]) -> tuple[str, str] | None:
    if not image_id:
        return "bad_image_id", "empty ImageID"
    if "/" in image_id or "\\" in image_id or image_id in (".", "..") or image_id.startswith("."):
        return "bad_image_id", f"ImageID {image_id!r} is not a plain file name"
    if image_id in seen:
        return "duplicate_image_id", f"ImageID {image_id!r} is listed again (first on line {seen[image_id]})"
    if image_id not in on_disk:
        return "missing_eval_image", f"image {image_id!r} not found in {EVAL_IMAGES}/"
    return None


def list_eval_images(root: Path, ignored: Counter) -> set[str]:
    folder = root / EVAL_IMAGES
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected the competition layout)")
    return {entry.name for entry in folder.iterdir() if not is_ignored_entry(entry.name, ignored) and entry.is_file()}


# --- shared ------------------------------------------------------------------------------------


def read_csv_records(path: Path, name: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs; a missing file or missing columns is a DataError."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [column.strip() for column in reader.fieldnames or []]
            missing = [column for column in columns if column not in header]
            if missing:
                raise DataError(
                    f"{name} line 1: missing column(s) {', '.join(missing)} (expected header {','.join(columns)})"
                )
            reader.fieldnames = header
            return [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected the competition layout)") from None
    except UnicodeDecodeError:
        raise DataError(f"{name}: not a UTF-8 text file") from None


def drop_unreadable(
    root: Path, table: pd.DataFrame, problems: list[Problem], progress: Progress | None
) -> pd.DataFrame:
    if table.empty:
        return table
    errors = image_errors([root / path for path in table["path"]], progress=progress)
    readable = [error is None for error in errors]
    for path, error in zip(table["path"], errors, strict=True):
        if error is not None:
            problems.append(Problem("unreadable_image", path, error))
    return table[readable].reset_index(drop=True)
