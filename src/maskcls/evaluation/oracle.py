"""The benchmark's ceiling: the macro F1 of an oracle that sees each person's latent cues.

The generator draws every face from latent cues, not from the labels: an *apparent age* (the
true age plus noise) drives wrinkles, greying and skin, and a *masculinity* score drives jaw,
brows, hair and stubble. ``truth/people.csv`` keeps both. The oracle reads them without any
image noise:
- mask state: always right (it is plainly visible in every photo);
- gender: male when masculinity > 0;
- age group: the apparent age cut at two borders, chosen to maximise 18-class macro F1 on the
  *training* people (the half-year grid of :mod:`maskcls.ages`, which also says what a border on
  a continuous age means) and then applied to the test people.

No image model can read the latent numbers better than the oracle; a leaderboard line divided by
its F1 is the share of that ceiling. A photo shows less than the latent numbers (the cues drawn from
them add noise of their own): ``bench/ceiling.py`` measures the best reading of the drawn cues, about
96% of the oracle's F1 in expectation. (A ceiling in practice, not a proof: a model could get lucky.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.ages import best_borders, groups_of_estimates
from maskcls.errors import DataError
from maskcls.evaluation.score import score_predictions
from maskcls.labels import MASK_STEMS, Gender, age_groups, encode_classes
from maskcls.metrics import macro_f1

PEOPLE_FILE = "people.csv"
MASKS_PER_PERSON = np.array([int(mask) for mask in MASK_STEMS.values()])  # a profile's 7 photos


def has_oracle(truth_dir: Path) -> bool:
    return (truth_dir / PEOPLE_FILE).exists() and (truth_dir / "eval.csv").exists()


def genders_from_cues(masculinity: np.ndarray) -> np.ndarray:
    return np.where(masculinity > 0, int(Gender.MALE), int(Gender.FEMALE))


def per_photo(values: np.ndarray) -> np.ndarray:
    """One value per person -> one per photo (a profile's 7 photos in MASK_STEMS order)."""
    return np.repeat(values, len(MASKS_PER_PERSON))


def oracle_borders(train: pd.DataFrame) -> tuple[float, float]:
    """The two apparent-age borders that maximise macro F1 over the training people's 7 photos
    (the grid and tie rule of every border search, :func:`maskcls.ages.best_borders`)."""
    masks = np.tile(MASKS_PER_PERSON, len(train))
    genders = per_photo(genders_from_cues(train["masculinity"].to_numpy()))
    truth = encode_classes(masks, per_photo(train["gender"].to_numpy()), per_photo(age_groups(train["age"].to_numpy())))
    apparent = per_photo(train["apparent_age"].to_numpy())
    return best_borders(
        lambda borders: macro_f1(truth, encode_classes(masks, genders, groups_of_estimates(apparent, borders)))
    )


def oracle_predictions(truth_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """(answers, oracle classes, public/private half) in ``truth/eval.csv`` order, and the borders."""
    people = pd.read_csv(truth_dir / PEOPLE_FILE)
    answers = pd.read_csv(truth_dir / "eval.csv")
    borders = oracle_borders(people[people["split"] == "train"])
    cues = people[people["split"] == "eval"].set_index("person")
    missing = sorted(set(answers["person"]) - set(cues.index))
    if missing:
        raise DataError(f"{truth_dir / PEOPLE_FILE}: no cues for test person {missing[0]!r}")
    rows = cues.loc[answers["person"]]
    genders = genders_from_cues(rows["masculinity"].to_numpy())
    ages = groups_of_estimates(rows["apparent_age"].to_numpy(), borders)
    predicted = encode_classes(answers["mask"].to_numpy(), genders, ages)
    return answers["ans"].to_numpy(), predicted, answers["half"].to_numpy(), borders


def oracle_score(truth_dir: Path) -> dict | None:
    """The oracle scored like a submission (public / private / all, per attribute), or None
    where the answers come without ``people.csv`` (real data, older synthetic sets)."""
    if not has_oracle(truth_dir):
        return None
    truth, predicted, halves, borders = oracle_predictions(truth_dir)
    return {**score_predictions(truth, predicted, halves), "age_borders": list(borders)}
