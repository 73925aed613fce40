"""A local leaderboard: validate a submission file and score it against known answers.

A submission is ``ImageID,ans`` with the rows of ``eval/info.csv`` in the same order and an
integer class 0..17 per row. Answers are a CSV with ``ImageID`` and ``ans`` (and optionally
``half``: public / private, as the synthetic sets' ``truth/eval.csv`` has), in info.csv order.
Macro F1 is the competition's metric (equal to scikit-learn's ``f1_score(average="macro",
labels=range(18))``).

Where the answers also name each photo's ``person`` (the synthetic sets' do), the half that ranks
gets how far its F1 could move with other people drawn: a 90% interval over bootstrap resamples
of its persons (each with all their photos), and, for a second submission and on, the share of
those same resamples in which it beats the first. A gain that wins in 60% of them is noise.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskcls.errors import DataError
from maskcls.evaluation.calibrate import cross_validated_f1
from maskcls.files import read_json, write_json_atomic
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS
from maskcls.metrics import compare_over_people, confusion, f1_per_class, summary
from maskcls.rundir import names
from maskcls.rundir.tables import read_made_record, read_probabilities

SUBMISSION_HEADER = ["ImageID", "ans"]
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Answers:
    ids: list[str]
    classes: np.ndarray
    halves: np.ndarray | None  # public / private per row, where the answers say
    persons: np.ndarray | None  # whose photo each row is, where the answers say

    def ranking_rows(self) -> np.ndarray:
        """The rows that rank: the private half where there are halves, else all."""
        return self.halves == "private" if self.halves is not None else np.ones(len(self.ids), bool)


def truth_file(path: str | Path) -> Path:
    """A dataset folder means its ``truth/eval.csv`` (its ``truth/`` folder, its ``eval.csv``); a
    file is used as given."""
    path = Path(path)
    if not path.is_dir():
        return path
    return path / "eval.csv" if (path / "eval.csv").exists() and path.name == "truth" else path / "truth" / "eval.csv"


def read_answers(path: str | Path) -> Answers:
    """ImageIDs and answers, with the public/private half and the person of each row where the
    file has ``half`` and ``person`` columns."""
    path = truth_file(path)
    rows = read_csv_rows(path)
    if not rows or not {"ImageID", "ans"} <= set(rows[0][1]):
        raise DataError(f"{path} line 1: expected columns ImageID and ans")
    ids = [row["ImageID"] for _, row in rows]
    try:
        answers = np.array([int(row["ans"]) for _, row in rows])
    except ValueError:
        raise DataError(f"{path}: ans must be integers") from None
    if len(answers) > 1 and not answers.any():
        raise DataError(
            f"{path}: every ans is 0: that is the eval/info.csv placeholder, not the answers "
            "(give the answers CSV, or a synthetic dataset folder for its truth/eval.csv)"
        )

    def column(name: str) -> np.ndarray | None:
        return np.array([row[name] for _, row in rows]) if name in rows[0][1] else None

    return Answers(ids, answers, column("half"), column("person"))


def read_submission(path: str | Path, expected_ids: list[str]) -> np.ndarray:
    """The predicted class of each expected ImageID; every problem named with its line."""
    path = Path(path)
    problems = []
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if [cell.strip() for cell in header or []] != SUBMISSION_HEADER:
            raise DataError(f"{path} line 1: header must be ImageID,ans (got {','.join(header or []) or 'nothing'})")
        rows = list(reader)
    dropped = dropped_rows(path, [cells[0].strip() if cells else "" for cells in rows], expected_ids)
    if dropped:
        more = len(dropped) - MAX_LISTED_PROBLEMS
        raise DataError(*dropped[:MAX_LISTED_PROBLEMS], f"... and {more} more rows missing" if more > 0 else "")
    predictions = np.full(len(expected_ids), -1)
    for index, cells in enumerate(rows):
        line = index + 2
        if index >= len(expected_ids):
            problems.append(f"{path} line {line}: extra row (info.csv has {len(expected_ids)} images)")
            break
        problem = row_problem(cells, expected_ids[index])
        if problem:
            problems.append(f"{path} line {line}: {problem}")
        else:
            predictions[index] = int(cells[1])
    if len(rows) < len(expected_ids):
        problems.append(
            f"{path} line {len(rows) + 2}: missing rows: {len(expected_ids) - len(rows)} of {len(expected_ids)} "
            f"images have no prediction (next expected ImageID {expected_ids[len(rows)]!r})"
        )
    if problems:
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise DataError(*shown, f"... and {more} more problems" if more else "")
    return predictions


def dropped_rows(path: Path, ids: list[str], expected_ids: list[str]) -> list[str]:
    """When the submission is info.csv's rows in order with some left out, one line per missing
    row (rather than an order error on every row after it); else nothing."""
    if len(ids) >= len(expected_ids) or len(set(ids)) != len(ids):
        return []
    missing, position = [], 0
    for index, expected in enumerate(expected_ids):
        if position < len(ids) and ids[position] == expected:
            position += 1
        else:
            missing.append((index, expected, position + 2))
    if position != len(ids):  # the rows left are not in info.csv's order: report them one by one
        return []
    return [
        f"{path} line {line}: row missing: ImageID {image_id!r} (info.csv row {index + 2}) has no prediction"
        for index, image_id, line in missing
    ]


def row_problem(cells: list[str], expected_id: str) -> str | None:
    if len(cells) != 2:
        return f"expected 2 fields (ImageID,ans), got {len(cells)}"
    image_id, answer = cells[0].strip(), cells[1].strip()
    if image_id != expected_id:
        return f"ImageID {image_id!r} where info.csv has {expected_id!r} (rows must keep info.csv's order)"
    if not answer.lstrip("-").isdigit():
        return f"ans {answer!r} is not an integer class"
    if not 0 <= int(answer) < NUM_CLASSES:
        return f"ans {answer} is outside 0..{NUM_CLASSES - 1}"
    return None


def predicted_classes(path: str | Path, expected_ids: list[str]) -> np.ndarray:
    """Classes from a submission, or the argmax of a probabilities file (ImageID, p0..p17)."""
    path = Path(path)
    with open_text(path) as handle:
        header = handle.readline()
    if "p0" not in header.strip().split(","):
        return read_submission(path, expected_ids)
    frame = read_probabilities(path)
    ids = list(frame.get("ImageID", []))
    if ids != expected_ids:
        pairs = zip(ids, expected_ids, strict=False)
        first = next((k for k, (got, want) in enumerate(pairs) if got != want), min(len(ids), len(expected_ids)))
        raise DataError(
            f"{path} line {first + 2}: rows must be info.csv's ImageIDs in order "
            f"({len(ids)} rows, {len(expected_ids)} expected)"
        )
    return frame[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1)


def score_submission(submission: str | Path, answers: str | Path) -> dict:
    """Macro F1 and accuracy on public, private and all rows; per-class and per-attribute F1."""
    return score_submissions([submission], answers)[str(submission)]


def score_submissions(submissions: list[str | Path], answers: str | Path) -> dict[str, dict]:
    """Each submission scored (:func:`score_submission`); with persons in the answers, the ranking
    half's F1 interval over them and each later submission's share of resamples beating the first."""
    answers = read_answers(answers)
    predictions = {str(submission): predicted_classes(submission, answers.ids) for submission in submissions}
    results = {}
    for name, predicted in predictions.items():
        made = read_made_record(name)
        results[name] = {
            **score_predictions(answers.classes, predicted, answers.halves),
            "validation_f1": validation_f1(name, made),
            "calibrated_by": made.get("calibration"),
        }
    if answers.persons is not None:
        add_uncertainty(results, predictions, answers)
    return results


def add_uncertainty(results: dict[str, dict], predictions: dict[str, np.ndarray], answers: Answers) -> None:
    """``f1_interval`` (90% of resamples of the ranking half's persons) and, from the second
    submission on, ``share_beating_first``, into each result's ranking half."""
    rows = answers.ranking_rows()
    half = "private" if answers.halves is not None else "all"
    if not rows.any():
        return
    compared = compare_over_people(
        answers.classes[rows], [predicted[rows] for predicted in predictions.values()], answers.persons[rows]
    )
    for result, over_people in zip(results.values(), compared, strict=True):
        result[half]["f1_interval"] = list(over_people.interval)
        if over_people.share_beating_first is not None:
            result[half]["share_beating_first"] = over_people.share_beating_first


def has_intervals(results: dict[str, dict]) -> bool:
    """Whether :func:`score_submissions` could resample people (the answers name them)."""
    return any("f1_interval" in result.get("private", result["all"]) for result in results.values())


def score_predictions(truth: np.ndarray, predicted: np.ndarray, halves: np.ndarray | None = None) -> dict:
    parts = {"all": np.ones(len(truth), bool)}
    if halves is not None:
        parts = {"public": halves == "public", "private": halves == "private", **parts}
    result = {name: summary(truth[rows], predicted[rows]) for name, rows in parts.items() if rows.any()}
    result["per_class_f1"] = f1_per_class(confusion(truth, predicted)).round(6).tolist()
    result["images"] = len(truth)
    return result


def validation_f1(submission: str | Path, made: dict | None = None) -> float | None:
    """The CV F1 of the decisions that made the submission: where gender and age were voted per
    person, the held-out F1 of the voted decisions (``predict --group-people``'s check); where a
    calibration fitted on its models decided it, the out-of-fold F1 that calibration measured (each
    fold decided with the borders and biases learned on the others); else the CV F1 (cv group) or
    best valid F1 (run) it came from. ``made``: its ``NAME.made.json`` when read already."""
    made = read_made_record(submission) if made is None else made
    if made.get("voted_f1") is not None:
        return made["voted_f1"]
    if made.get("calibration") and not made.get("calibration_fitted_elsewhere"):
        return cross_validated_f1(made["calibration"])
    folder = submission_source(submission, made)
    if folder is None:
        return None
    for name, key in ((names.CV_RESULT, "oof_f1"), (names.RESULT, "valid_f1")):
        if (folder / name).exists():
            return read_json(folder / name).get(key)
    return None


def submission_source(submission: str | Path, made: dict | None = None) -> Path | None:
    """The run or cv group a submission came from: the one model its ``NAME.made.json`` (``made``,
    when read already; written by ``predict`` and ``ensemble --out``) names, else the run or group
    folder it lies in; else None."""
    made = read_made_record(submission) if made is None else made
    sources = made.get("sources", [])
    if len(sources) == 1 and names.kind(sources[0]) in (names.Kind.RUN, names.Kind.GROUP):
        return Path(sources[0])
    folder = Path(submission).resolve().parent
    return folder if names.kind(folder) in (names.Kind.RUN, names.Kind.GROUP) else None


def write_score(submission: str | Path, result: dict) -> Path:
    """``NAME.score.json`` beside the submission: what the runs table shows as leaderboard F1."""
    path = Path(submission).with_suffix(".score.json")
    write_json_atomic(path, result)
    return path


def read_csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        return [(reader.line_num, row) for row in reader]


def open_text(path: Path):
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a CSV file") from None
