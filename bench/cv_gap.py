"""Why CV and the private leaderboard differ on a synthetic set: the out-of-fold macro F1 against the
training labels as given (with the planted errors) and against the true labels (truth/), beside
the private and public F1 of the group's submission; then what the CV measures against what is
submitted: each fold model alone on the test photos against the fold models together (flip TTA,
the group's calibration when it has one, per photo), all test people and the private half.

    .venv/bin/python bench/cv_gap.py GROUP DATA-faces [SUBMISSION]

Reads the set's hidden answers (``truth/``): an evaluation of the tool, not part of a pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from maskcls.evaluation.score import Answers, read_answers, score_predictions, score_submission, validation_f1
from maskcls.inference.predict import predict_dataset
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


def test_f1(table: pd.DataFrame, answers: Answers) -> tuple[float, float]:
    """Macro F1 of a test table's argmax classes on all test people and on the private half."""
    predicted = table.set_index("ImageID").loc[answers.ids, PROBABILITY_COLUMNS].to_numpy().argmax(axis=1)
    scores = score_predictions(answers.classes, predicted, answers.halves)
    return scores["all"]["f1"], scores["private"]["f1"]


def one_model_against_all(group: Path, data: Path) -> None:
    """The CV scores one fold model on people it did not see; the submission averages them all."""
    calibration = group / "calibration.json" if (group / "calibration.json").exists() else None
    per_photo = {"sources": [str(group)], "calibration": str(calibration) if calibration else None}
    cv = validation_f1(group / "per-photo.csv", per_photo)  # as score names the CV of such a submission
    print(f"CV F1 (each photo decided by the one model that did not see it): {cv:.4f}")
    answers = read_answers(data)
    prediction = predict_dataset([group], data, tta="flip", backend="auto", calibration=calibration)
    alone = {run: test_f1(table, answers) for run, table in prediction.per_run.items()}
    for run, (everyone, private) in alone.items():
        print(f"  {run.name} alone on the test photos: all {everyone:.4f}, private {private:.4f}")
    mean_all, mean_private = (sum(figures) / len(alone) for figures in zip(*alone.values(), strict=True))
    together_all, together_private = test_f1(prediction.table, answers)
    print(
        f"  mean of the fold models alone: all {mean_all:.4f} (CV - this {cv - mean_all:+.4f}), "
        f"private {mean_private:.4f}"
    )
    print(
        f"  the {len(alone)} together: all {together_all:.4f} ({together_all - mean_all:+.4f}), "
        f"private {together_private:.4f} ({together_private - mean_private:+.4f})"
    )


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
        f"{options.group}: out-of-fold F1 at the models' own cut on the given labels {given:.4f}, "
        f"on the true labels {true:.4f}; "
        f"public {scores['public']['f1']:.4f}, private {scores['private']['f1']:.4f}"
    )
    one_model_against_all(options.group, options.data)


if __name__ == "__main__":
    main()
