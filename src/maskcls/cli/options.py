"""Every option and argument the commands share, in one place; choice options are enums so that
``--help`` lists their choices and a wrong one is refused before anything runs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from maskcls.choices import BACKENDS, DETECTOR_NAMES, EXPLAIN_SPLITS, PRUNERS, TABLE_FORMATS, TTA_MODES, VOTE_METHODS


def choice_enum(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """An enum whose members are ``values`` (each named as its value), for a choice option."""
    return StrEnum(name, [(value, value) for value in values])


Tta = choice_enum("Tta", TTA_MODES)
Backend = choice_enum("Backend", BACKENDS)
Detector = choice_enum("Detector", DETECTOR_NAMES)
Vote = choice_enum("Vote", VOTE_METHODS)
Pruner = choice_enum("Pruner", PRUNERS)
TableFormat = choice_enum("TableFormat", TABLE_FORMATS)
ExplainSplit = choice_enum("ExplainSplit", EXPLAIN_SPLITS)

BACKEND_HELP = (
    "torch, onnxruntime (exports model.onnx if missing), int8 (model-int8.onnx, quantized if missing; its "
    "probabilities differ a little), or auto: the faster of torch and onnxruntime for this run on this device, "
    "timed once and kept in RUN/backend.json."
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataArg = Annotated[Path, typer.Argument(help="Dataset folder in the competition layout.")]
Corrections = Annotated[Path | None, typer.Option("--corrections", "-c", help="YAML file of label fixes to apply.")]
Strict = Annotated[bool, typer.Option("--strict", help="Any problem in the data is an error (exit 2).")]
Data = Annotated[Path | None, typer.Option(help="Dataset folder (same as -o data.root=...).")]
CacheDir = Annotated[Path | None, typer.Option(help="Decoded-image cache folder (same as -o train.cache_dir=...).")]
Override = Annotated[
    list[str] | None, typer.Option("--override", "-o", help="KEY=VALUE, e.g. -o optim.lr=3e-4 (repeatable).")
]
Seed = Annotated[int | None, typer.Option(help="Random seed (same as -o seed=...).")]
Folds = Annotated[int | None, typer.Option(help="Number of folds (same as -o train.folds=...).")]
RunsDir = Annotated[Path, typer.Option(help="Where run folders go.")]
PredictedGroup = Annotated[Path, typer.Argument(help="cv group that predicted the test set (maskcls predict GROUP).")]
RunsBesideGroup = Annotated[Path | None, typer.Option(help="Where the new runs go (default: beside GROUP).")]
Recipe = Annotated[Path, typer.Argument(help="Base YAML recipe file, or a shipped recipe's name.")]
Calibration = Annotated[
    Path | None,
    typer.Option(help="Age borders and per-class biases from `maskcls calibrate` (calibration.json) to apply."),
]
ModelCalibration = Annotated[
    str,
    typer.Option(
        "--calibration",
        help="auto: the group's own calibration.json (maskcls calibrate) when it has one; none: the raw "
        "model; or a calibration.json file.",
    ),
]
TtaOption = Annotated[Tta, typer.Option(help="Test-time augmentation.")]
BackendOption = Annotated[Backend, typer.Option(help=BACKEND_HELP)]


Track = Annotated[
    str | None,
    typer.Option(
        "--track",
        help="MLflow tracking URI to log to, e.g. http://host:5000 (default: the recipe's track.uri, else "
        "MLFLOW_TRACKING_URI); a server that does not answer is an error before anything runs.",
    ),
]
TrackOptional = Annotated[
    bool, typer.Option("--track-optional", help="A tracking server that does not answer at start is only a warning.")
]


def with_shortcuts(overrides: list[str] | None, shortcuts: dict) -> list[str]:
    """``-o`` overrides plus the options that are shortcuts for config keys (when given)."""
    return [*(overrides or []), *(f"{key}={value}" for key, value in shortcuts.items() if value is not None)]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``'192x256'`` -> (192, 256)."""
    from maskcls.errors import UserError

    if not text:
        return None
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 192x256")
    return int(width), int(height)


def calibration_choice(text: str) -> str | None:
    """``--calibration``'s value for the library: None for ``none``, else as given."""
    return None if text.lower() == "none" else text


def parse_floats(text: str, option: str) -> list[float]:
    from maskcls.errors import UserError

    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated numbers, got {text!r}") from None
