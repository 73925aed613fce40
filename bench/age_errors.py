"""Where a model's age estimate goes wrong on a synthetic set: its error against each test person's
*apparent* age (the latent cue the synthetic faces are drawn from, which the oracle cuts) by band of
apparent age and by mask state, how much of it is shared by a person's photos (what a person vote
cannot remove), and how far the drawn age itself lies from the apparent one (what no model can
remove).

    .venv/bin/python bench/age_errors.py DATA-faces PROBABILITIES.csv

PROBABILITIES.csv: ``maskcls predict``'s test_probabilities.csv of a model with the distribution age
head (its age_estimate column). Reads the set's hidden answers (``truth/``): an evaluation of the
tool, not part of a pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from maskcls.labels import AGE_ESTIMATE_COLUMN

BANDS = [0, 25, 30, 35, 55, 60, 65, 100]  # apparent age; the groups' borders at 30 and 60 stand out
MASK_NAMES = {0: "wear", 1: "incorrect", 2: "not wear"}


def estimates_with_truth(data: Path, probabilities: Path) -> pd.DataFrame:
    """One row per test photo: its person, mask, age, apparent age and the model's estimate."""
    people = pd.read_csv(data / "truth" / "people.csv")
    photos = pd.read_csv(data / "truth" / "eval.csv")
    estimates = pd.read_csv(probabilities, usecols=["ImageID", AGE_ESTIMATE_COLUMN])
    apparent = people.loc[people["split"] == "eval", ["person", "apparent_age"]]
    table = photos.merge(estimates, on="ImageID", validate="one_to_one").merge(apparent, on="person")
    table["error"] = table[AGE_ESTIMATE_COLUMN] - table["apparent_age"]
    return table


def by_band(table: pd.DataFrame) -> pd.DataFrame:
    """Photos, mean error (bias) and mean absolute error per band of apparent age."""
    bands = pd.cut(table["apparent_age"], BANDS)
    errors = table.assign(abs_error=table["error"].abs()).groupby(bands, observed=True)
    return pd.DataFrame(
        {"photos": errors.size(), "bias": errors["error"].mean(), "abs_error": errors["abs_error"].mean()}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("probabilities", type=Path)
    options = parser.parse_args()
    table = estimates_with_truth(options.data, options.probabilities)
    person_error = table.groupby("person")["error"].transform("mean")
    print(
        f"{len(table)} test photos, {table['person'].nunique()} people; mean absolute error of the estimate: "
        f"{table['error'].abs().mean():.2f} years against the apparent age, "
        f"{(table[AGE_ESTIMATE_COLUMN] - table['age']).abs().mean():.2f} against the age; "
        f"the apparent age itself is {(table['apparent_age'] - table['age']).abs().mean():.2f} from the age"
    )
    around_person = (table["error"] - person_error).abs().mean()
    print(
        f"shared by a person's photos (mean absolute of each person's mean error): "
        f"{person_error.abs().mean():.2f}; each photo around its person's mean: {around_person:.2f}"
    )
    print(by_band(table).round(2).to_string())
    by_mask = table.groupby("mask")["error"].apply(lambda errors: errors.abs().mean())
    print("mean absolute error by mask state: " + ", ".join(f"{MASK_NAMES[k]} {v:.2f}" for k, v in by_mask.items()))


if __name__ == "__main__":
    main()
