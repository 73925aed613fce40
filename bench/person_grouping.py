"""What person grouping gives on a synthetic set: ``predict --group-people`` (its check on held-out
training people), the test photos' clustering purity, and the private F1 per photo, voted over
the groups found and voted over the true persons (the most any grouping could give).

    .venv/bin/python bench/person_grouping.py GROUP DATA-faces [--tta flip]

Reads the set's hidden answers (``truth/``): an evaluation of the tool, not part of a pipeline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.inference.people import purity, vote_in_people
from maskcls.inference.predict import predict_dataset
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.metrics import summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--tta", default="flip")
    options = parser.parse_args()
    started = time.perf_counter()
    prediction = predict_dataset([options.group], options.data, tta=options.tta, calibration=None, group_people=True)
    seconds = time.perf_counter() - started
    check = prediction.grouping.check
    print(
        f"check on {check.people} held-out training people: purity {check.purity:.3f}, macro F1 "
        f"{check.f1_per_photo:.4f} -> {check.f1_grouped:.4f} (better in {check.sure:.0%} of resamples): "
        f"{'applied' if prediction.grouping.applied else 'not applied'}; predict with grouping {seconds:.1f} s"
    )
    truth = pd.read_csv(options.data / "truth" / "eval.csv")
    table = truth.merge(prediction.table, on="ImageID").merge(prediction.people, on="ImageID", suffixes=("", "_found"))
    if prediction.grouping.applied:  # the table holds the voted probabilities: nothing to compare per photo
        print("the vote was applied: run without --group-people for the per-photo figures")
    probabilities, private = table[PROBABILITY_COLUMNS].to_numpy(), (table["half"] == "private").to_numpy()
    found, persons = table["person_found"].to_numpy(), table["person"].to_numpy()
    print(f"test purity {purity(found, persons):.4f} ({len(np.unique(persons))} people)")
    variants = {
        "per photo": probabilities.argmax(axis=1),
        "voted, found groups": vote_in_people(probabilities, found).argmax(axis=1),
        "voted, true persons": vote_in_people(probabilities, pd.factorize(persons)[0]).argmax(axis=1),
    }
    for name, predicted in variants.items():
        scores = summary(table["ans"].to_numpy()[private], predicted[private])
        print(
            f"  {name:20s} private F1 {scores['f1']:.4f}  mask {scores['f1_mask']:.4f}  "
            f"gender {scores['f1_gender']:.4f}  age {scores['f1_age']:.4f}"
        )


if __name__ == "__main__":
    main()
