"""How the decisions made after training (the person vote, the class biases) move a group's F1 on
its held-out training people and on its test halves, per attribute: whether the held-out checks
that apply them can foresee what they do to the test photos.

    .venv/bin/python bench/decision_noise.py GROUP DATA-faces VOTED_FOLDER

GROUP: a cv group with its calibration.json (``maskcls calibrate GROUP``); VOTED_FOLDER: where
``maskcls predict GROUP --data DATA-faces --tta flip --group-people --out VOTED_FOLDER`` wrote its
person_groups.csv. The script predicts the group's raw test outputs itself (flip TTA, no
calibration, no vote). Reads the synthetic set's hidden answers
(``DATA-faces/truth/eval.csv``): an evaluation of the tools, not part of a pipeline.

The vote: the out-of-fold rows decided per photo and voted, each fold with the borders and biases
learned without it (predict's check), with the clusters the check finds and with the true
persons; then the test photos, per photo and voted. The biases: after the learned age borders,
none, calibrate's 18 per-class biases, and 8 per-attribute ones (mask 3, gender 2, age 3, each
added to every class with that value: calibrate's fit_biases along those directions), held-out
(fitted on the other folds) and on the test photos (fitted on all out-of-fold rows). "better in":
the share of 400 resamples of the people in which a line's macro F1 beats the first line's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.data.layout import read_dataset
from maskcls.evaluation.age_borders import with_age_borders
from maskcls.evaluation.calibrate import (
    calibrated_classes,
    clipped_log,
    fit_biases,
    fitted_on_runs,
    fold_calibration,
    held_out_biases,
    held_out_classes,
    read_calibration,
)
from maskcls.experiments.tune import fold_runs
from maskcls.inference import people
from maskcls.inference.predict import predict_dataset
from maskcls.labels import (
    AGE_ESTIMATE_COLUMN,
    HEAD_SIZES,
    NUM_CLASSES,
    PROBABILITY_COLUMNS,
    decode_classes,
    split_outputs,
)
from maskcls.metrics import macro_f1, share_of_resamples_better, summary


def show(where, truth, lines, persons):
    first = lines[0][1]
    for label, predicted in lines:
        f1 = summary(truth, predicted)
        sure = share_of_resamples_better(truth, first, predicted, persons)
        print(
            f"{where:8} {label:24} F1 {f1['f1']:.4f}  mask {f1['f1_mask']:.4f} gender {f1['f1_gender']:.4f} "
            f"age {f1['f1_age']:.4f}  better in {sure:.0%}"
        )


ATTRIBUTE_OF_CLASS = np.vstack(  # rows: mask 0-2, gender 0-1, age group 0-2; 1 where a class holds that value
    [
        values == np.arange(size)[:, None]
        for values, size in zip(decode_classes(np.arange(NUM_CLASSES)), HEAD_SIZES.values(), strict=True)
    ]
).astype(float)


def fit_attribute_biases(log_probabilities, target):
    return fit_biases(log_probabilities, target, directions=ATTRIBUTE_OF_CLASS)


BIAS_FORMS = {
    "no biases": lambda log_probabilities, target: np.zeros(NUM_CLASSES),
    "18 per-class biases": fit_biases,
    "8 per-attribute biases": fit_attribute_biases,
}


def log_probabilities_at_borders(outputs, age):
    probabilities, estimates = split_outputs(outputs)
    return clipped_log(with_age_borders(probabilities, estimates, age.borders, age.scale))


def main(group: Path, data: Path, voted: Path) -> None:
    runs = fold_runs(group)
    calibration = read_calibration(group / "calibration.json")
    training = read_dataset(data, require_train=True).train
    validated = people.validation_table(runs)
    outputs = validated.drop(columns=["path", "target", "fold"]).to_numpy()
    target = validated["target"].to_numpy()
    folds = validated["fold"].to_numpy() if fitted_on_runs(calibration, runs) else None
    checked = pd.Series(np.arange(len(training)), index=training["path"])[validated["path"]].to_numpy()
    vote_held_out(group, data, training, checked, outputs, target, folds, calibration)
    test = raw_test_table(group, data)
    vote_test(test, voted, calibration)
    if calibration.age_borders is not None and folds is not None:
        bias_forms(outputs, target, folds, test, calibration)


def vote_held_out(group, data, training, checked, outputs, target, folds, calibration):
    """The out-of-fold rows per photo and voted, as predict's check decides them."""
    paths = list(training["path"])
    layouts = people.identity_layouts(data, paths, group.parent / "cache", people.whole_photos(data, paths))
    persons = training["profile"].to_numpy()
    checked_persons = persons[checked]
    clusters = people.held_out_clusters(layouts, persons, checked)
    _, true_persons = np.unique(checked_persons, return_inverse=True)
    print(f"held-out people: purity {people.purity(clusters, checked_persons):.3f}")
    show("held-out", target, [
        ("per photo", held_out_classes(outputs, folds, calibration)),
        ("voted", held_out_classes(people.vote_outputs(outputs, clusters), folds, calibration)),
        ("voted, true persons", held_out_classes(people.vote_outputs(outputs, true_persons), folds, calibration)),
    ], checked_persons)  # fmt: skip


def raw_test_table(group, data) -> pd.DataFrame:
    """The group's raw test outputs (flip TTA, no calibration, no vote) with the hidden answers."""
    answers = pd.read_csv(data / "truth" / "eval.csv")[["ImageID", "ans", "person", "half"]]
    raw = predict_dataset([group], data, tta="flip", backend="auto", calibration=None).table
    return raw.merge(answers, on="ImageID")


def vote_test(test, voted, calibration):
    """The test photos per photo and voted, with the clusters predict found and the true persons."""
    outputs = test[PROBABILITY_COLUMNS + [AGE_ESTIMATE_COLUMN]].to_numpy()
    found = pd.read_csv(voted / "person_groups.csv").set_index("ImageID").loc[test["ImageID"], "person"].to_numpy()
    persons = test["person"].to_numpy()
    print(f"test people: purity {people.purity(found, persons):.3f}")
    lines = [
        ("per photo", calibrated_classes(outputs, calibration)),
        ("voted", calibrated_classes(people.vote_outputs(outputs, found), calibration)),
        ("voted, true persons", calibrated_classes(people.vote_outputs(outputs, persons), calibration)),
    ]
    for half in ("private", "all"):
        keep = (test["half"] == half).to_numpy() if half == "private" else np.ones(len(test), bool)
        truth = test["ans"].to_numpy()[keep]
        show(f"{half} ", truth, [(label, predicted[keep]) for label, predicted in lines], persons[keep])


def bias_forms(outputs, target, folds, test, calibration):
    """Each form of biases after the learned borders: held-out as calibrate's guard sees it, and on
    the test photos fitted on all out-of-fold rows."""
    fold_log = [
        log_probabilities_at_borders(outputs, fold_calibration(calibration, int(fold)).age) for fold in np.unique(folds)
    ]
    fitted = log_probabilities_at_borders(outputs, calibration.age)
    decided = log_probabilities_at_borders(
        test[PROBABILITY_COLUMNS + [AGE_ESTIMATE_COLUMN]].to_numpy(), calibration.age
    )
    private, truth = (test["half"] == "private").to_numpy(), test["ans"].to_numpy()
    for form, fit in BIAS_FORMS.items():
        held, _ = held_out_biases(fold_log, target, folds, fit)
        classes = (decided + fit(fitted, target)).argmax(axis=1)
        print(
            f"{form:24} held-out {macro_f1(target, held):.4f}  test: private "
            f"{macro_f1(truth[private], classes[private]):.4f}, all {macro_f1(truth, classes):.4f}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*map(Path, sys.argv[1:4]))
