"""The served model against the submission: a group's Predictor on the raw test photos (detector,
crop, models, calibration) and `predict --data` on the cropped set, photo by photo.

    python bench/served_vs_submission.py GROUP RAW_DATA CROPPED_DATA
    e.g. python bench/served_vs_submission.py demo-runs/cpu-pretrained-cv3 demo-data demo-data-faces
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import maskcls
from maskcls.inference.predict import predict_dataset
from maskcls.labels import PROBABILITY_COLUMNS


def main() -> None:
    group, raw, faces = (Path(arg) for arg in sys.argv[1:4])
    started = time.perf_counter()
    submission = predict_dataset([group], faces, backend="torch").table.set_index("ImageID")
    predicted = time.perf_counter()
    served = maskcls.Predictor(group, backend="torch").predict_paths(raw / "eval" / "images")
    done = time.perf_counter()
    served = served.assign(ImageID=[Path(path).name for path in served["path"]]).set_index("ImageID")
    got = served.loc[submission.index, PROBABILITY_COLUMNS].to_numpy(float)
    wanted = submission[PROBABILITY_COLUMNS].to_numpy(float)
    same = int((got.argmax(1) == wanted.argmax(1)).sum())
    largest = np.abs(got - wanted).max()
    print(f"{len(got)} photos: equal classes {same}/{len(got)}, max probability difference {largest:.1e}")
    uncalibrated = predict_dataset([group], faces, backend="torch", calibration=None).table
    changed = int((uncalibrated[PROBABILITY_COLUMNS].to_numpy().argmax(1) != wanted.argmax(1)).sum())
    print(f"classes the group's calibration changed: {changed}")
    print(f"predict --data {predicted - started:.1f} s; Predictor.predict_paths {done - predicted:.1f} s")


if __name__ == "__main__":
    main()
