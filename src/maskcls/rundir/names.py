"""Every file name of a run folder and a cv group folder, and what kind of folder a path is
(a run, a cv group, a sweep, a study).

A **run** (``maskcls train``) holds its resolved config, per-epoch summary, checkpoints and the
best epoch's validation probabilities; a **cv group** (``maskcls cv``) holds one run per fold
and the out-of-fold table. Prediction, calibration, reports and the runs table add their own
files beside these. Every module names these files through this one place.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

# a run
CONFIG = "config.json"  # the resolved config, git commit, environment
CONFIG_YAML = "config.yaml"  # a group's config as a file that `maskcls train` reads
SUMMARY = "summary.csv"  # one row per epoch
RESULT = "result.json"  # written when the run finished: best epoch and its valid F1
BEST_CHECKPOINT = "best.pt"  # by valid macro F1
LAST_CHECKPOINT = "last.pt"  # for resuming
VALID_PROBABILITIES = "valid_probabilities.csv"  # best epoch, one row per validation image
CONFUSION_FIGURE = "confusion.png"  # best epoch, validation
VALID_GRID_FIGURE = "valid_grid.png"  # best epoch: some validation images titled truth / prediction
CROP_SETTINGS = "crop.json"  # how the training images were cut (copied from the data folder)
# a cv group
GROUP = "group.json"  # name, folds, seed, its runs, config
CV_RESULT = "cv.json"  # per-fold F1, out-of-fold F1
OOF_PROBABILITIES = "oof_probabilities.csv"  # every training image, by the fold that held it out
SWEEP = "sweep.json"
# a study (maskcls tune): one run folder or cv group per trial
TUNE = "tune.json"  # the plan: base config, search space, budget
TRIAL = "trial.json"  # in a trial's folder: study, number, parameters, state
STUDY_DB = "study.db"  # the default (SQLite) storage
TRIALS_TABLE = "trials.csv"
BEST_CONFIG = "best.yaml"
STUDY_RESULT = "study.json"
# written by later steps, in a run or a group
TEST_PROBABILITIES = "test_probabilities.csv"
SUBMISSION = "submission.csv"
PHOTO_PREDICTIONS = "photo_predictions.csv"  # predict --images: one row per photo
PERSON_GROUPS = "person_groups.csv"  # predict --group-people: the person cluster of each photo
# (not the synthetic set's truth/people.csv, which holds who each person is)
ONNX_MODEL = "model.onnx"
BACKEND = "backend.json"  # predict --backend auto: the measured choice
CALIBRATION = "calibration.json"
AUDIT = "audit.yaml"
REPORT = "report.html"
TRACKING = "tracking.json"  # which MLflow run this folder is logged to, and how far (maskcls --track)


def made_record(submission: str | Path) -> Path:
    """``NAME.made.json`` beside a submission (``predict``, ``ensemble --out``): the runs or groups
    it came from and the calibration that decided it, where score finds the CV F1 to show."""
    return Path(submission).with_suffix(".made.json")


class Kind(Enum):
    RUN = "run"
    GROUP = "cv group"
    SWEEP = "sweep"
    STUDY = "study"
    NONE = "none"


def kind(folder: str | Path) -> Kind:
    """A cv group, a sweep, a study (``maskcls tune``), a trained run (it has a checkpoint or a
    config), or none of them."""
    folder = Path(folder)
    for file, found in ((GROUP, Kind.GROUP), (SWEEP, Kind.SWEEP), (TUNE, Kind.STUDY)):
        if (folder / file).exists():
            return found
    if (folder / BEST_CHECKPOINT).exists() or (folder / CONFIG).exists():
        return Kind.RUN
    return Kind.NONE
