"""What one distilled model saves against the ensemble it learned from: test photos per second
as ``maskcls predict`` runs them (the forward passes of every model, flip TTA) and one photo's
latency as ``maskcls serve`` answers it (face crop included), per source and backend.

    .venv/bin/python bench/distill_speed.py DATA-faces RAW_PHOTO GROUP:auto STUDENT:auto STUDENT:int8 ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from maskcls.inference.inference import Predictor, decode_photo
from maskcls.inference.predict import predict_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("sources", nargs="+", help="SOURCE:BACKEND (auto, torch, onnxruntime, int8)")
    options = parser.parse_args()
    photo = decode_photo(str(options.photo), options.photo.read_bytes(), 10**8)
    for spec in options.sources:
        source, backend = spec.rsplit(":", 1)
        prediction = predict_dataset([source], options.data, tta="flip", backend=backend, calibration=None)
        photos_per_second = prediction.images_per_second / prediction.models
        predictor = Predictor(source, backend=backend)
        predictor.predict([photo])  # warm-up
        started = time.perf_counter()
        for _ in range(20):
            predictor.predict([photo])
        latency = (time.perf_counter() - started) / 20
        print(
            f"{source} ({prediction.models} model(s), {'+'.join(prediction.backends)}): predict "
            f"{photos_per_second:.0f} test photos/s with flip TTA; serve {latency * 1000:.0f} ms per photo"
        )


if __name__ == "__main__":
    main()
