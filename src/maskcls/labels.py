"""The competition's labels: mask state, gender, age group, and the 18 classes they make.

``class = mask * 6 + gender * 3 + age_group``. Age borders are parameters so that a model can be
trained with a moved cut (e.g. 58: treat 58+ as "60+") while being evaluated on the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import numpy as np


class Mask(IntEnum):
    WEAR = 0
    INCORRECT = 1
    NOT_WEAR = 2


class Gender(IntEnum):
    MALE = 0
    FEMALE = 1


class AgeGroup(IntEnum):
    YOUNG = 0  # < 30
    MIDDLE = 1  # 30 .. 59
    OLD = 2  # >= 60


NUM_CLASSES = 18
HEAD_SIZES = {"mask": len(Mask), "gender": len(Gender), "age": len(AgeGroup)}
AGE_BORDERS = (30, 60)

MASK_STEMS = {
    "mask1": Mask.WEAR,
    "mask2": Mask.WEAR,
    "mask3": Mask.WEAR,
    "mask4": Mask.WEAR,
    "mask5": Mask.WEAR,
    "incorrect_mask": Mask.INCORRECT,
    "normal": Mask.NOT_WEAR,
}
"""File stem of each of the 7 images in a profile folder, and the mask state it shows."""

GENDER_NAMES = {"male": Gender.MALE, "female": Gender.FEMALE}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def mask_from_stem(stem: str) -> Mask:
    """``mask3`` -> WEAR, ``incorrect_mask`` -> INCORRECT, ``normal`` -> NOT_WEAR."""
    try:
        return MASK_STEMS[stem]
    except KeyError:
        known = ", ".join(MASK_STEMS)
        raise ValueError(f"unknown image name {stem!r} (expected one of {known})") from None


def parse_gender(text: str) -> Gender:
    try:
        return GENDER_NAMES[text.strip().lower()]
    except KeyError:
        raise ValueError(f"gender {text!r} is not 'male' or 'female'") from None


def age_group(age: int, borders: Sequence[int] = AGE_BORDERS) -> AgeGroup:
    """Age in years -> age group, with ``borders = (young_below, old_from)``."""
    young_below, old_from = borders
    if age < young_below:
        return AgeGroup.YOUNG
    return AgeGroup.MIDDLE if age < old_from else AgeGroup.OLD


def age_groups(ages: np.ndarray, borders: Sequence[int] = AGE_BORDERS) -> np.ndarray:
    """Vectorised :func:`age_group` for an array of ages."""
    validate_age_borders(borders)
    return np.digitize(np.asarray(ages), bins=list(borders)).astype(np.int64)


def validate_age_borders(borders: Sequence[int]) -> None:
    if len(borders) != 2 or not borders[0] < borders[1]:
        raise ValueError(f"age borders must be two increasing ages, got {list(borders)}")


def encode_class(mask: int, gender: int, age: int) -> int:
    """(mask, gender, age group) -> one of the 18 competition classes."""
    if not (0 <= mask < 3 and 0 <= gender < 2 and 0 <= age < 3):
        raise ValueError(f"labels out of range: mask={mask} gender={gender} age={age}")
    return int(mask) * 6 + int(gender) * 3 + int(age)


def encode_classes(mask: np.ndarray, gender: np.ndarray, age: np.ndarray) -> np.ndarray:
    return np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age)


def person_classes(labels: np.ndarray) -> np.ndarray:
    """Gender x age group (0..5) of each class: the part that is the same in all of a person's photos."""
    _, genders, ages = decode_classes(labels)
    return genders * len(AgeGroup) + ages


def decode_class(label: int) -> tuple[Mask, Gender, AgeGroup]:
    """One of the 18 classes -> (mask, gender, age group)."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"class {label} is outside 0..{NUM_CLASSES - 1}")
    return Mask(label // 6), Gender(label // 3 % 2), AgeGroup(label % 3)


def decode_classes(labels):
    """Classes -> (mask, gender, age group) arrays; a torch tensor gives tensors (no NumPy copy)."""
    if not hasattr(labels, "ndim"):
        labels = np.asarray(labels)
    return labels // 6, labels // 3 % 2, labels % 3


AGE_GROUP_NAMES = {AgeGroup.YOUNG: "<30", AgeGroup.MIDDLE: "30-59", AgeGroup.OLD: "60+"}
MASK_NAMES = {Mask.WEAR: "wear", Mask.INCORRECT: "incorrect", Mask.NOT_WEAR: "not wear"}


def class_name(label: int) -> str:
    """``7`` -> ``'incorrect / male / 30-59'``."""
    mask, gender, age = decode_class(label)
    return f"{MASK_NAMES[mask]} / {gender.name.lower()} / {AGE_GROUP_NAMES[age]}"


HEAD_VALUE_NAMES = {
    "mask": list(MASK_NAMES.values()),
    "gender": [gender.name.lower() for gender in Gender],
    "age": list(AGE_GROUP_NAMES.values()),
}
PROBABILITY_COLUMNS = [f"p{k}" for k in range(NUM_CLASSES)]
AGE_ESTIMATE_COLUMN = "age_estimate"
"""Age in years estimated by an ordinal, regression or distribution age head; after p17 in a table."""


def split_outputs(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A model's outputs (N, 18) or (N, 19) -> the 18-class probabilities and the age estimate
    (the 19th column, when the model's age head gives one; else None)."""
    outputs = np.asarray(outputs)
    return outputs[:, :NUM_CLASSES], (outputs[:, NUM_CLASSES] if outputs.shape[1] > NUM_CLASSES else None)


def output_columns(width: int) -> list[str]:
    """Table columns of outputs ``width`` wide: p0..p17 [, age_estimate]."""
    return PROBABILITY_COLUMNS + [AGE_ESTIMATE_COLUMN] * (width - NUM_CLASSES)


def mean_outputs(outputs: list[np.ndarray]) -> np.ndarray:
    """The mean of several models' outputs; the age estimate is kept only when every model gives one."""
    width = min(part.shape[1] for part in outputs)
    return sum(part[:, :width] for part in outputs) / len(outputs)


def mask_gender_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N, 18) -> (N, 6): P(mask, gender), index ``mask * 2 + gender`` (a class without its age)."""
    return np.asarray(probabilities, dtype=np.float64).reshape(-1, 6, 3).sum(axis=2)


def class_from_mask_gender(mask_gender: np.ndarray, age: np.ndarray) -> np.ndarray:
    """The class of a ``mask * 2 + gender`` index and an age group (= ``encode_classes``)."""
    return np.asarray(mask_gender) * 3 + np.asarray(age)


CLASS_CUBE = (-1, 3, 2, 3)  # 18 classes as mask x gender x age: class = mask*6 + gender*3 + age
HEAD_AXES = {"mask": (2, 3), "gender": (1, 3), "age": (1, 2)}  # the cube's axes summed away for each head


def head_marginals(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """18-class probabilities (N, 18) summed to each head: mask (N, 3), gender (N, 2), age (N, 3)."""
    cube = np.asarray(probabilities, dtype=np.float64).reshape(CLASS_CUBE)
    return {name: cube.sum(axis=axes) for name, axes in HEAD_AXES.items()}
