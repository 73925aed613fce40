"""maskcls: face-attribute image classification (mask state, gender, age group) from photos.

The public API, loaded on first use (``import maskcls`` stays fast; the CLI's start-up too)::

    import maskcls
    config = maskcls.load_config("cpu-pretrained", data="data-faces")
    group = maskcls.cross_validate(config)
    table = maskcls.predict(group.folder, data="data-faces")

See :mod:`maskcls.api` for every call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

PUBLIC = {
    "load_config": "maskcls.api",
    "fit": "maskcls.api",
    "cross_validate": "maskcls.api",
    "tune": "maskcls.api",
    "predict": "maskcls.api",
    "calibrate": "maskcls.api",
    "ensemble": "maskcls.api",
    "score": "maskcls.api",
    "compare": "maskcls.api",
    "load_run": "maskcls.api",
    "synth": "maskcls.api",
    "crop": "maskcls.api",
    "runs": "maskcls.api",
    "explain": "maskcls.api",
    "pseudo": "maskcls.api",
    "distill": "maskcls.api",
    "track": "maskcls.api",
    "Predictor": "maskcls.inference.inference",
    "FitResult": "maskcls.results",
    "CvResult": "maskcls.results",
    "StudyResult": "maskcls.results",
    "Config": "maskcls.config",
    "UserError": "maskcls.errors",
}
__all__ = [
    "Config",
    "CvResult",
    "FitResult",
    "Predictor",
    "StudyResult",
    "UserError",
    "__version__",
    "calibrate",
    "compare",
    "crop",
    "cross_validate",
    "distill",
    "ensemble",
    "explain",
    "fit",
    "load_config",
    "load_run",
    "predict",
    "pseudo",
    "runs",
    "score",
    "synth",
    "track",
    "tune",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from maskcls.api import (
        calibrate,
        compare,
        crop,
        cross_validate,
        distill,
        ensemble,
        explain,
        fit,
        load_config,
        load_run,
        predict,
        pseudo,
        runs,
        score,
        synth,
        track,
        tune,
    )
    from maskcls.config import Config
    from maskcls.errors import UserError
    from maskcls.inference.inference import Predictor
    from maskcls.results import CvResult, FitResult, StudyResult


def __getattr__(name: str):
    if name not in PUBLIC:
        raise AttributeError(f"module 'maskcls' has no attribute {name!r}")
    value = getattr(importlib.import_module(PUBLIC[name]), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])
