"""What the service's maps cost: one photo predicted with and without ``maps`` (the Predictor
that ``maskcls serve`` runs), mean of 10 requests after a warm-up.

    .venv/bin/python bench/serve_maps.py RUN_OR_GROUP PHOTO [--backend torch]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from maskcls.inference.inference import Predictor, decode_photo


def mean_seconds(call, repeats: int = 10) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--backend", default="torch")
    options = parser.parse_args()
    predictor = Predictor(options.source, backend=options.backend)
    photo = decode_photo(str(options.photo), options.photo.read_bytes(), 10**8)
    predictor.predict([photo], maps=True)  # loads the models for maps, finds the layer
    with_maps = mean_seconds(lambda: predictor.predict([photo], maps=True))
    plain = mean_seconds(lambda: predictor.predict([photo]))
    print(
        f"{options.source} ({len(predictor.runs)} model(s), {predictor.backend}): with maps {with_maps * 1000:.0f} ms, "
        f"without {plain * 1000:.0f} ms; the maps cost {(with_maps - plain) * 1000:.0f} ms per photo"
    )


if __name__ == "__main__":
    main()
