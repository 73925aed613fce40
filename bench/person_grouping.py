"""What person grouping gives on a synthetic set: ``predict --group-people`` (its check on held-out
training people, decided as predict decides: the group's calibration applied after the vote), the
test photos' clustering purity, and the private F1 per photo, voted over the groups found and voted
over the true persons (the most any grouping could give).

    .venv/bin/python bench/person_grouping.py GROUP DATA-faces [--tta flip]

The identity signal is what ``predict`` uses: the face crops and, when DATA-faces/crop.json names the
folder of the whole photos and it still holds them, the whole photos too (a crop folder made before
it was recorded: the crops alone). Reads the set's hidden answers (``truth/``): an evaluation of the
tool, not part of a pipeline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.evaluation.calibrate import calibrated_classes, calibration_for
from maskcls.inference.people import purity, vote_outputs
from maskcls.inference.predict import predict_dataset
from maskcls.labels import output_columns
from maskcls.metrics import summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--tta", default="flip")
    options = parser.parse_args()
    plain = predict_dataset([options.group], options.data, tta=options.tta, calibration=None)
    started = time.perf_counter()
    grouped = predict_dataset([options.group], options.data, tta=options.tta, group_people=True)
    seconds = time.perf_counter() - started
    check = grouped.grouping.check
    print(
        f"whole photos read from: {grouped.grouping.whole_photos or 'none (the photos alone)'}\n"
        f"check on {check.people} held-out training people: purity {check.purity:.3f}, macro F1 "
        f"{check.f1_per_photo:.4f} -> {check.f1_grouped:.4f} (better in {check.sure:.0%} of resamples): "
        f"{'applied' if grouped.grouping.applied else 'not applied'}; predict with grouping {seconds:.1f} s"
    )
    truth = pd.read_csv(options.data / "truth" / "eval.csv")
    table = truth.merge(plain.table, on="ImageID").merge(grouped.people, on="ImageID", suffixes=("", "_found"))
    outputs = table[output_columns(plain.table.shape[1] - 1)].to_numpy()
    private = (table["half"] == "private").to_numpy()
    found, persons = table["person_found"].to_numpy(), table["person"].to_numpy()
    print(f"test purity {purity(found, persons):.4f} ({len(np.unique(persons))} people)")
    calibration = calibration_for([options.group], "auto")
    variants = {
        "per photo": outputs,
        "voted, found groups": vote_outputs(outputs, found),
        "voted, true persons": vote_outputs(outputs, pd.factorize(persons)[0]),
    }
    for name, voted in variants.items():
        scores = summary(table["ans"].to_numpy()[private], calibrated_classes(voted, calibration)[private])
        print(
            f"  {name:20s} private F1 {scores['f1']:.4f}  mask {scores['f1_mask']:.4f}  "
            f"gender {scores['f1_gender']:.4f}  age {scores['f1_age']:.4f}"
        )


if __name__ == "__main__":
    main()
