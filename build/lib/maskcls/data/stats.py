"""Counts that describe a dataset: images and people, the 18 classes, each attribute, problems."""

from __future__ import annotations

from collections import Counter

import numpy as np

from maskcls.data.layout import Dataset
from maskcls.labels import (
    AGE_BORDERS,
    AGE_GROUP_NAMES,
    MASK_NAMES,
    NUM_CLASSES,
    AgeGroup,
    Gender,
    Mask,
    age_groups,
    class_name,
    encode_classes,
)


def dataset_stats(dataset: Dataset, age_borders: tuple[int, int] = AGE_BORDERS) -> dict:
    train = dataset.train
    ages = age_groups(train["age"].to_numpy(), age_borders) if len(train) else np.array([], dtype=int)
    classes = encode_classes(train["mask"].to_numpy(), train["gender"].to_numpy(), ages)
    people = dataset.people
    people_ages = age_groups(people["age"].to_numpy(), age_borders) if len(people) else np.array([], dtype=int)
    class_counts = np.bincount(classes.astype(int), minlength=NUM_CLASSES) if len(classes) else np.zeros(18, int)
    return {
        "root": str(dataset.root),
        "train_images": len(train),
        "train_people": len(people),
        "eval_images": len(dataset.eval),
        "age_borders": list(age_borders),
        "classes": [
            {"class": k, "name": class_name(k), "images": int(n), "share": share(n, len(train))}
            for k, n in enumerate(class_counts)
        ],
        "images_by": {
            "mask": named_counts(train["mask"], {int(m): MASK_NAMES[m] for m in Mask}),
            "gender": named_counts(train["gender"], {int(g): g.name.lower() for g in Gender}),
            "age": named_counts(ages, {int(a): AGE_GROUP_NAMES[a] for a in AgeGroup}),
        },
        "people_by": {
            "gender": named_counts(people["gender"], {int(g): g.name.lower() for g in Gender}),
            "age": named_counts(people_ages, {int(a): AGE_GROUP_NAMES[a] for a in AgeGroup}),
        },
        "duplicate_ids": sorted(person_id for person_id, n in Counter(people["person_id"]).items() if n > 1),
        "problems": [problem.as_dict() for problem in dataset.problems],
        "problem_counts": dict(Counter(problem.kind for problem in dataset.problems)),
        "ignored": dict(dataset.ignored),
        "corrections": dataset.corrections,
    }


def named_counts(values, names: dict[int, str]) -> dict[str, int]:
    counts = Counter(int(v) for v in values)
    return {name: counts.get(code, 0) for code, name in names.items()}


def share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0
