"""What the audit, the calibration and person grouping are worth, on a synthetic set whose
answers are known (this reads ``truth/``: an evaluation of the tools, not a training step).

    .venv/bin/python bench/label_tools.py --group bench-runs/cpu-strong-cv3 --data demo-data-faces \\
        [--age-group bench-runs/cpu-strong-age58-cv3]

1. audit: precision and recall of the top-k suggestions against truth/corruptions.csv;
2. calibrate: OOF macro F1 before / after (held-out folds), leaderboard F1 before / after;
   with --age-group also the age-border training trick, alone and with calibration;
3. group people: clustering purity against the true persons, and the F1 change.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.evaluation.audit import audit
from maskcls.evaluation.calibrate import calibrate
from maskcls.inference.people import purity
from maskcls.inference.predict import PROBABILITY_COLUMNS, predict_dataset
from maskcls.metrics import summary


def audit_quality(group: Path, data: Path) -> None:
    planted = pd.read_csv(data / "truth" / "corruptions.csv")
    wanted = {(row.profile, "gender" if row.kind == "gender" else "mask") for row in planted.itertuples()}
    suggestions = audit(group)
    found = list(zip(suggestions["profile"], suggestions["attribute"], strict=True))
    print(f"\n## audit of {group}: {len(planted)} planted mistakes, {len(found)} suggestions")
    print("| top k | hits | precision | recall |\n|---|---|---|---|")
    for k in sorted({5, 10, 20, 30, len(wanted)}):
        hits = len(set(found[:k]) & wanted)
        print(f"| {k} | {hits} | {hits / k:.2f} | {hits / len(wanted):.2f} |")
    attribute = suggestions.head(len(wanted))
    print("top suggestions:", ", ".join(f"{p} {a}{' *' if (p, a) in wanted else ''}" for p, a in found[:10]))
    print("(* = a planted mistake)", attribute["attribute"].value_counts().to_dict())


def leaderboard(table: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    answers = truth.loc[table["ImageID"]]
    predicted = table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1)
    scores = {}
    for half in ("public", "private"):
        rows = (answers["half"] == half).to_numpy()
        scores[half] = summary(answers["ans"].to_numpy()[rows], predicted[rows])["f1"]
    scores["all"] = summary(answers["ans"].to_numpy(), predicted)["f1"]
    return scores


def calibration_effect(groups: list[Path], data: Path, truth: pd.DataFrame, scratch: Path) -> None:
    print("\n## calibration (per-class biases) and the age-border trick")
    print("| experiment | OOF F1 | OOF F1 calibrated (held-out) | public | private | all |\n|---|---|---|---|---|---|")
    for group in groups:
        result = calibrate(group)
        calibration = result.write(scratch / f"{group.name}.calibration.json")
        plain = leaderboard(predict_dataset([group], data).table, truth)
        tuned = leaderboard(predict_dataset([group], data, calibration=calibration).table, truth)
        print(f"| {group.name} | {result.oof_f1_before:.4f} | | {plain['public']:.4f} | {plain['private']:.4f} | "
              f"{plain['all']:.4f} |")  # fmt: skip
        print(f"| {group.name} + calibration | | {result.heldout_f1_after:.4f} (guard "
              f"{'passed' if result.guard_passed else 'failed'}) | {tuned['public']:.4f} | {tuned['private']:.4f} | "
              f"{tuned['all']:.4f} |")  # fmt: skip


def grouping_effect(group: Path, data: Path, truth: pd.DataFrame) -> None:
    plain = predict_dataset([group], data)
    grouped = predict_dataset([group], data, group_people=True)
    people = grouped.people.set_index("ImageID")
    score = purity(people["person"].to_numpy(), truth.loc[people.index, "person"].to_numpy())
    before, after = leaderboard(plain.table, truth), leaderboard(grouped.table, truth)
    answers = truth.loc[plain.table["ImageID"]]
    heads = {}
    for name, table in (("plain", plain.table), ("grouped", grouped.table)):
        heads[name] = summary(answers["ans"].to_numpy(), table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    print(f"\n## person grouping on {group}: purity {score:.3f} over {len(people)} photos, "
          f"{people['person'].nunique()} clusters, {truth['person'].nunique()} true persons")  # fmt: skip
    print("| | public | private | all | gender F1 | age F1 |\n|---|---|---|---|---|---|")
    for name, scores in (("per photo", before), ("grouped", after)):
        key = "plain" if name == "per photo" else "grouped"
        print(f"| {name} | {scores['public']:.4f} | {scores['private']:.4f} | {scores['all']:.4f} | "
              f"{heads[key]['f1_gender']:.4f} | {heads[key]['f1_age']:.4f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--age-group", type=Path)
    args = parser.parse_args()
    truth = pd.read_csv(args.data / "truth" / "eval.csv").set_index("ImageID")
    audit_quality(args.group, args.data)
    with tempfile.TemporaryDirectory() as scratch:
        groups = [args.group, *([args.age_group] if args.age_group else [])]
        calibration_effect(groups, args.data, truth, Path(scratch))
    grouping_effect(args.group, args.data, truth)
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
