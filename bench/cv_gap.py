"""Why CV and the private leaderboard differ on a synthetic set: the out-of-fold macro F1 against the
training labels as given (with the planted errors) and against the true labels (truth/), beside
the private and public F1 of the group's submission.

    .venv/bin/python bench/cv_gap.py GROUP DATA-faces [SUBMISSION]

Reads the set's hidden answers (``truth/``): an evaluation of the tool, not part of a pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from maskcls.evaluation.score import score_submission
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.metrics import macro_f1


def true_targets(oof: pd.DataFrame, data: Path) -> pd.Series:
    """The OOF photos' classes with the planted label errors undone (truth/corruptions.csv)."""
    corruptions = pd.read_csv(data / "truth" / "corruptions.csv")
    mask, gender, age = (oof["target"] // 6, (oof["target"] // 3) % 2, oof["target"] % 3)
    flipped = set(corruptions.loc[corruptions["kind"] == "gender", "profile"])
    swapped = set(corruptions.loc[corruptions["kind"] == "swap_incorrect_normal", "profile"])
    gender = gender.where(~oof["profile"].isin(flipped), 1 - gender)
    is_swapped = oof["profile"].isin(swapped) & mask.isin([1, 2])
    mask = mask.where(~is_swapped, 3 - mask)  # incorrect (1) <-> not wear (2)
    return mask * 6 + gender * 3 + age


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("submission", type=Path, nargs="?")
    options = parser.parse_args()
    oof = pd.read_csv(options.group / "oof_probabilities.csv")
    predicted = oof[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1)
    given, true = macro_f1(oof["target"], predicted), macro_f1(true_targets(oof, options.data), predicted)
    scores = score_submission(options.submission or options.group / "submission.csv", options.data)
    print(
        f"{options.group}: CV F1 on the given labels {given:.4f}, on the true labels {true:.4f}; "
        f"public {scores['public']['f1']:.4f}, private {scores['private']['f1']:.4f}"
    )


if __name__ == "__main__":
    main()
