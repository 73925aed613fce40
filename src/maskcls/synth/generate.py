"""``maskcls synth``: a synthetic dataset in exactly the competition layout.

::

    OUT/train/train.csv, OUT/train/images/<id>_<gender>_Asian_<age>/{mask1..5,incorrect_mask,normal}.jpg
    OUT/eval/info.csv (40-hex names, ans 0), OUT/eval/images/
    OUT/truth/  eval.csv (answers, person, public/private half), boxes.csv (face box of every
                image), corruptions.csv (training labels planted wrong), people.csv (each
                person's labels and latent cues: apparent age, masculinity), meta.json

Deterministic for a given seed and version: every person draws from their own random stream,
so the result does not depend on the number of worker processes. The dataset is written to a
temporary folder next to OUT and renamed into place at the end: OUT is complete or absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from maskcls.callbacks import Progress
from maskcls.errors import UserError
from maskcls.files import write_csv_atomic, write_json_atomic
from maskcls.labels import MASK_STEMS, Gender, Mask, age_group, encode_class
from maskcls.synth.draw import draw_photo
from maskcls.synth.people import Person, Profile, draw_background_colours, draw_clothes, sample_person
from maskcls.synth.quirks import name_quirks, plant_file_quirks

GENERATOR_VERSION = 2  # 2: faces a detector finds (shaded eye sockets, hairline, smaller eyes)
RACE = "Asian"
SETTINGS = ("person", "photo")  # where the background and clothes are drawn: per person or per photo


@dataclass(frozen=True)
class SynthSpec:
    people: int = 300
    eval_people: int | None = None  # default: 2/3 of ``people`` (the competition's 60/40 split)
    seed: int = 0
    difficulty: float = 0.5
    quirks: bool = False
    setting: str = "person"  # background and clothes drawn per "person" (as real photos share them) or per "photo"

    @property
    def eval_count(self) -> int:
        return self.eval_people if self.eval_people is not None else max(1, round(self.people * 2 / 3))


@dataclass
class SynthSummary:
    root: Path
    train_images: int = 0
    eval_images: int = 0
    seconds: float = 0.0
    corruptions: list[dict] = field(default_factory=list)
    quirks: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return (self.train_images + self.eval_images) / max(self.seconds, 1e-9)


def generate_dataset(
    out: str | Path,
    spec: SynthSpec = SynthSpec(),
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SynthSummary:
    out = Path(out)
    check_spec(spec)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder exists and is not empty (overwrite replaces it: --overwrite)")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        summary = write_dataset(staging, spec, workers, progress)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.root = out
    summary.seconds = time.perf_counter() - started
    return summary


def check_spec(spec: SynthSpec) -> None:
    if spec.people < 1:
        raise UserError(f"people must be at least 1, got {spec.people}")
    if spec.eval_count < 1:
        raise UserError(f"eval_people must be at least 1, got {spec.eval_people}")
    if not 0.0 <= spec.difficulty <= 1.0:
        raise UserError(f"--difficulty must be between 0 and 1, got {spec.difficulty}")
    if spec.setting not in SETTINGS:
        raise UserError(f"--setting must be one of {', '.join(SETTINGS)}, got {spec.setting!r}")
    if spec.quirks and spec.people < 12:
        raise UserError("--quirks needs at least 12 people to plant every quirk")


def write_dataset(root: Path, spec: SynthSpec, workers: int | None, progress: Progress | None) -> SynthSummary:
    train = make_profiles(spec, "train")
    evaluation = make_profiles(spec, "eval")
    if spec.quirks:
        train = name_quirks(train)
    for folder in ("train/images", "eval/images", "truth"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    boxes = render_all(root, train + evaluation, spec, workers, progress)
    write_train_csv(root, train)
    answers = write_eval_files(root, evaluation, spec.seed)
    write_truth(root, boxes, answers, train)
    write_people(root, train + evaluation)
    summary = SynthSummary(root, train_images=7 * len(train), eval_images=7 * len(evaluation))
    summary.corruptions = corruption_records(train)
    if spec.quirks:
        summary.quirks = plant_file_quirks(root, train, evaluation)
    write_json_atomic(root / "truth/meta.json", meta(spec, summary))
    return summary


def make_profiles(spec: SynthSpec, split: str) -> list[Profile]:
    offset = 0 if split == "train" else spec.people
    count = spec.people if split == "train" else spec.eval_count
    people = [
        sample_person(offset + k, np.random.default_rng([spec.seed, offset + k, 0]), spec.difficulty)
        for k in range(count)
    ]
    if split == "eval":
        return [eval_profile(person, spec.seed) for person in people]
    flips, swaps = choose_corruptions(len(people), spec)
    return [train_profile(person, k in flips, k in swaps) for k, person in enumerate(people)]


def choose_corruptions(count: int, spec: SynthSpec) -> tuple[set[int], set[int]]:
    """A few wrong training labels, like the real set: gender flips and swapped incorrect/normal."""
    rng = np.random.default_rng([spec.seed, 1_000_003])
    rate = 0.5 + spec.difficulty
    flips = max(1, round(0.012 * count * rate)) if count >= 20 else 0
    swaps = max(1, round(0.005 * count * rate)) if count >= 20 else 0
    chosen = rng.choice(count, size=flips + swaps, replace=False)
    return set(chosen[:flips].tolist()), set(chosen[flips:].tolist())


def train_profile(person: Person, flip_gender: bool, swap: bool) -> Profile:
    person_id = f"{person.index + 1:06d}"
    given = Gender(1 - person.gender) if flip_gender else person.gender
    folder = f"{person_id}_{given.name.lower()}_{RACE}_{person.age}"
    return Profile(person, "train", folder, person_id, {stem: f"{stem}.jpg" for stem in MASK_STEMS}, given, swap)


def eval_profile(person: Person, seed: int) -> Profile:
    names = {stem: hashlib.sha1(f"{seed}:{person.index}:{stem}".encode()).hexdigest() + ".jpg" for stem in MASK_STEMS}
    return Profile(person, "eval", f"person{person.index:06d}", f"{person.index + 1:06d}", names, person.gender)


# --- rendering, in parallel processes -----------------------------------------------------------


def render_all(
    root: Path, profiles: list[Profile], spec: SynthSpec, workers: int | None, progress: Progress | None
) -> list[tuple[str, tuple[int, int, int, int]]]:
    workers = workers or os.cpu_count() or 1
    tasks = [(root, profile, spec.seed, spec.difficulty, spec.setting) for profile in profiles]
    with ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            results = pool.map(render_profile, tasks, chunksize=4)
        else:
            results = map(render_profile, tasks)
        return collect(results, len(tasks), progress)


def collect(results, total: int, progress: Progress | None) -> list:
    boxes = []
    for done, profile_boxes in enumerate(results, 1):
        boxes.extend(profile_boxes)
        if progress:
            progress(done * 7, total * 7)
    return boxes


def render_profile(task: tuple[Path, Profile, int, float, str]) -> list[tuple[str, tuple[int, int, int, int]]]:
    root, profile, seed, difficulty, setting = task
    person = profile.person
    rng = np.random.default_rng([seed, person.index, 1])
    settings = np.random.default_rng([seed, person.index, 2])  # its own stream: "person" draws stay as before
    folder = f"train/images/{profile.folder}" if profile.split == "train" else "eval/images"
    (root / folder).mkdir(parents=True, exist_ok=True)
    boxes = []
    for stem, mask in MASK_STEMS.items():
        shown = shown_mask(mask, profile.swap_incorrect_normal)
        style = person.masks[int(stem[-1]) - 1] if stem.startswith("mask") else person.masks[0]
        sitter = person if setting == "person" else with_new_setting(person, settings)
        image, box = draw_photo(sitter, shown, style, rng, difficulty)
        relative = f"{folder}/{profile.file_names[stem]}"
        save_image(image, root / relative, quality=int(rng.integers(70, 96)))
        boxes.append((relative, tuple(int(round(v)) for v in box)))
    return boxes


def with_new_setting(person: Person, rng: np.random.Generator) -> Person:
    """The same person in another place and other clothes: what the face alone tells apart."""
    return replace(person, clothes=draw_clothes(rng), background=draw_background_colours(rng))


def shown_mask(labelled: Mask, swapped: bool) -> Mask:
    """With a swap corruption the file named incorrect_mask shows no mask, and vice versa."""
    if swapped and labelled == Mask.INCORRECT:
        return Mask.NOT_WEAR
    if swapped and labelled == Mask.NOT_WEAR:
        return Mask.INCORRECT
    return labelled


def save_image(image, path: Path, quality: int) -> None:
    if path.suffix.lower() == ".png":
        image.save(path, format="PNG", compress_level=1)
    else:
        image.save(path, format="JPEG", quality=quality)


# --- tables -------------------------------------------------------------------------------------


def write_train_csv(root: Path, train: list[Profile]) -> None:
    rows = [
        {
            "id": p.person_id,
            "gender": p.given_gender.name.lower(),
            "race": RACE,
            "age": p.person.age,
            "path": p.folder,
        }
        for p in train
    ]
    write_csv_atomic(root / "train/train.csv", ["id", "gender", "race", "age", "path"], rows)


def write_eval_files(root: Path, evaluation: list[Profile], seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, 2_000_003])
    public = set(rng.permutation(len(evaluation))[: len(evaluation) // 2 + len(evaluation) % 2].tolist())
    answers = []
    for k, profile in enumerate(evaluation):
        person = profile.person
        for stem, mask in MASK_STEMS.items():
            answers.append(
                {
                    "ImageID": profile.file_names[stem],
                    "ans": encode_class(mask, person.gender, age_group(person.age)),
                    "person": profile.folder,
                    "mask": int(mask),
                    "gender": int(person.gender),
                    "age": person.age,
                    "half": "public" if k in public else "private",
                }
            )
    order = rng.permutation(len(answers))
    answers = [answers[i] for i in order]
    write_csv_atomic(root / "eval/info.csv", ["ImageID", "ans"], [{"ImageID": a["ImageID"], "ans": 0} for a in answers])
    write_csv_atomic(root / "truth/eval.csv", list(answers[0]), answers)
    return answers


def write_truth(root: Path, boxes: list, answers: list[dict], train: list[Profile]) -> None:
    box_rows = [{"path": path, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]} for path, b in boxes]
    write_csv_atomic(root / "truth/boxes.csv", ["path", "x0", "y0", "x1", "y1"], box_rows)
    write_csv_atomic(root / "truth/corruptions.csv", ["profile", "kind", "given", "true"], corruption_records(train))


def write_people(root: Path, profiles: list[Profile]) -> None:
    """Every person's true labels and latent cues, for the oracle that bounds what a model can do."""
    rows = [
        {
            "split": p.split,
            "person": p.folder,
            "gender": int(p.person.gender),
            "age": p.person.age,
            "apparent_age": round(p.person.apparent_age, 4),
            "masculinity": round(p.person.masculinity, 4),
        }
        for p in profiles
    ]
    write_csv_atomic(root / "truth/people.csv", list(rows[0]), rows)


def corruption_records(train: list[Profile]) -> list[dict]:
    records = []
    for p in train:
        if p.given_gender != p.person.gender:
            records.append(
                {
                    "profile": p.folder,
                    "kind": "gender",
                    "given": p.given_gender.name.lower(),
                    "true": p.person.gender.name.lower(),
                }
            )
        if p.swap_incorrect_normal:
            records.append({"profile": p.folder, "kind": "swap_incorrect_normal", "given": "", "true": ""})
    return records


def meta(spec: SynthSpec, summary: SynthSummary) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "train_people": spec.people,
        "eval_people": spec.eval_count,
        "train_images": summary.train_images,
        "eval_images": summary.eval_images,
        "corruptions": len(summary.corruptions),
        "quirks": summary.quirks,
    }
