"""Pseudo-labels chosen per head instead of on the 18-class probability (measured, not kept).

    .venv/bin/python bench/per_head_labels.py GROUP [--threshold 0.9] [--out GROUP/per-head-labels.csv]

``maskcls pseudo`` takes a test photo when its fold model's 18-class probability reaches the
threshold; with a distribution age head no photo estimated over 57 ever does, so the second round
sees no old test faces. Here a photo is taken when the mask x gender marginal (the sum over the
three age groups) reaches the threshold, and its age label is the model's estimate in years
whatever its confidence. The file has ``pseudo``'s columns; train a fine-tuned second round on it:

    maskcls cv cpu-pretrained --data DATA-faces --folds 3 -o name=per-head -o data.pseudo=FILE \
        -o 'model.weights=GROUP/fold{fold}/best.pt' -o train.epochs=2 -o optim.lr=0.0005 -o optim.warmup_epochs=0

Reads each fold's ``test_probabilities.csv`` (``maskcls predict GROUP --calibration none``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from maskcls.experiments.pseudo import fold_tables, label_rows
from maskcls.files import write_text_atomic
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS, mask_gender_probabilities


def per_head_labels(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The photos whose mask x gender marginal reaches ``threshold``, aged by the model's estimate."""
    marginal = mask_gender_probabilities(table[PROBABILITY_COLUMNS].to_numpy(dtype=float))
    best, confidence = marginal.argmax(axis=1), marginal.max(axis=1)  # best = mask * 2 + gender
    ages = table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float)
    return label_rows(table, best // 2, best % 2, ages, confidence, threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", type=Path)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tables = fold_tables(args.group)
    parts = [per_head_labels(table, args.threshold).assign(fold=fold) for fold, table in enumerate(tables)]
    labels = pd.concat(parts, ignore_index=True)
    out = args.out or args.group / "per-head-labels.csv"
    write_text_atomic(out, labels.to_csv(index=False))
    old = int((labels.age >= 57).sum())
    print(f"{out}: {len(labels)} photos over {len(tables)} folds; estimated 57 or older: {old}")


if __name__ == "__main__":
    main()
