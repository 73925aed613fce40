"""Who the synthetic people are: labels, and the look that the labels leave on a face.

Gender and age are shown by overlapping, noisy cues (hair length and colour, jaw, brows,
wrinkles, greying), driven by an *apparent* age and a *masculinity* score rather than by the
labels directly, so that the 30 and 60 borders and some genders are genuinely ambiguous.
``difficulty`` (0 easy .. 1 hard) scales that noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskcls.labels import Gender

SKIN_TONES = np.array(
    [[236, 200, 170], [224, 184, 150], [210, 166, 130], [196, 150, 116], [241, 210, 185], [180, 132, 98]],
    dtype=float,
)
HAIR_COLOURS = np.array([[22, 18, 16], [40, 28, 20], [60, 40, 28], [30, 24, 30], [80, 56, 36]], dtype=float)
GREY_HAIR = np.array([160, 158, 154], dtype=float)  # brighter greys framed faces a detector then missed
MASK_PATTERNS = ("plain", "stripes", "dots", "pleats", "kf94")


@dataclass(frozen=True)
class MaskStyle:
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    pattern: str
    height: float  # fraction of the face height the mask covers when worn


@dataclass(frozen=True)
class Person:
    """One synthetic person: labels plus everything needed to draw their 7 photos consistently."""

    index: int
    gender: Gender
    age: int
    apparent_age: float
    masculinity: float  # about -1 (feminine cues) .. +1 (masculine cues)
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_length: float  # 0 short .. 1 shoulder length
    fringe: float
    jaw: float  # chin width relative to face width
    face_width: float  # pixels, before per-photo scale
    face_aspect: float
    brow_thickness: float
    wrinkles: float  # 0 none .. 1 many deep lines
    grey_share: float  # 0 the hair's own colour .. 1 all grey (``hair`` is drawn with it mixed in)
    stubble: float
    lip_colour: tuple[int, int, int]
    eye_spacing: float
    clothes: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    masks: tuple[MaskStyle, ...]


def sample_age(rng: np.random.Generator) -> int:
    """Like the competition: many people in their 20s and 50s, about 7% exactly 60 or older."""
    group = rng.choice(3, p=[0.47, 0.46, 0.07])
    if group == 0:
        return int(rng.integers(18, 30))
    if group == 1:
        return int(np.clip(round(rng.triangular(30, 55, 60)), 30, 59))
    return int(60 + min(15, rng.geometric(0.35) - 1))


def sample_person(index: int, rng: np.random.Generator, difficulty: float = 0.5) -> Person:
    gender = Gender.FEMALE if rng.random() < 0.6 else Gender.MALE
    age = sample_age(rng)
    noise = 0.1 + 0.5 * difficulty
    apparent_age = max(14.0, age + rng.normal(0, 1.0 + 4 * difficulty))
    masculinity = float(np.clip((1.0 if gender == Gender.MALE else -1.0) + rng.normal(0, noise), -2, 2))
    youth = np.clip((apparent_age - 18) / 50, 0, 1.2)
    grey_share = float(np.clip((apparent_age - 35) / 25 + rng.normal(0, 0.1), 0, 1))
    hair_base = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    hair = (1 - grey_share) * hair_base + grey_share * GREY_HAIR
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 6, 3) - youth * np.array([4, 8, 10])
    has_long_hair = rng.random() < 1 / (1 + np.exp(3.0 * masculinity))
    hair_length = float(has_long_hair * rng.uniform(0.55, 1.0) + rng.uniform(0, 0.25))
    face_width = rng.uniform(105, 135)
    return Person(
        index=index,
        gender=gender,
        age=age,
        apparent_age=float(apparent_age),
        masculinity=masculinity,
        skin=rgb(skin),
        hair=rgb(hair),
        hair_length=hair_length,
        fringe=float(rng.uniform(0, 1)),
        jaw=float(np.clip(0.62 + 0.1 * masculinity + rng.normal(0, 0.05), 0.45, 0.9)),
        face_width=float(face_width),
        face_aspect=float(rng.uniform(1.22, 1.38) + 0.03 * youth),
        brow_thickness=float(np.clip(3.0 + 1.2 * masculinity + rng.normal(0, 0.6), 1.5, 6.5)),
        wrinkles=float(np.clip((apparent_age - 27) / 30 + rng.normal(0, 0.06), 0, 1)),
        grey_share=grey_share,
        stubble=float(np.clip(masculinity - 0.4 + rng.normal(0, 0.3), 0, 1) * (rng.random() < 0.6)),
        lip_colour=lip_colour(rng, masculinity),
        eye_spacing=float(rng.uniform(0.20, 0.25)),
        clothes=draw_clothes(rng),
        background=draw_background_colours(rng),
        masks=tuple(sample_mask_style(rng) for _ in range(5)),
    )


def draw_clothes(rng: np.random.Generator) -> tuple[int, int, int]:
    return rgb(rng.uniform(20, 235, 3))


def draw_background_colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The top and bottom colours of the backdrop's gradient."""
    return rgb(rng.uniform(60, 250, 3)), rgb(rng.uniform(40, 230, 3))


def lip_colour(rng: np.random.Generator, masculinity: float) -> tuple[int, int, int]:
    lipstick = rng.random() < 0.55 / (1 + np.exp(2.5 * masculinity))
    if lipstick:
        return rgb(np.array([170, 40, 60]) + rng.normal(0, 15, 3))
    return rgb(np.array([170, 100, 95]) + rng.normal(0, 10, 3))


def sample_mask_style(rng: np.random.Generator) -> MaskStyle:
    white_or_black = rng.random()
    if white_or_black < 0.35:
        colour = np.full(3, rng.uniform(225, 252))
    elif white_or_black < 0.55:
        colour = np.full(3, rng.uniform(20, 50))
    else:
        colour = rng.uniform(30, 240, 3)
    accent = np.clip(colour + rng.choice([-1, 1]) * rng.uniform(40, 90), 0, 255)
    return MaskStyle(
        colour=rgb(colour),
        accent=rgb(accent),
        pattern=str(rng.choice(MASK_PATTERNS)),
        height=float(rng.uniform(0.44, 0.54)),
    )


def rgb(values: np.ndarray) -> tuple[int, int, int]:
    clipped = np.clip(np.asarray(values, dtype=float), 0, 255).round().astype(int)
    return int(clipped[0]), int(clipped[1]), int(clipped[2])


@dataclass(frozen=True)
class Profile:
    """One person as written to disk: their folder (train) or hashed names (eval)."""

    person: Person
    split: str  # "train" or "eval"
    folder: str  # profile folder name (train) or a synthetic person name (eval)
    person_id: str
    file_names: dict[str, str]  # stem -> file name
    given_gender: Gender  # the label written to train.csv (differs from the truth if corrupted)
    swap_incorrect_normal: bool = False
