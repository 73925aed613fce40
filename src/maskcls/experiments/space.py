"""A search space file: config keys with the distributions ``maskcls tune`` samples them from.

    optim.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
    optim.weight_decay: {type: float, low: 0.0, high: 0.1}
    train.epochs: {type: int, low: 3, high: 8}
    train.augmentation: {type: choice, values: [none, flip, light, seed, strong]}
    train.image_size: {type: choice, values: [[48, 64], [72, 96]]}

A plain list is a choice. Every key is checked against the config schema, and every value a
dimension can take (both ends of a range, every choice) is validated in the base config, before
anything trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskcls.config import Config, ConfigError, check_known_keys, read_yaml_mapping, set_dotted
from maskcls.experiments.sweep import FIXED_KEYS, variant_config

KINDS = {"float": {"low", "high", "log"}, "int": {"low", "high", "log", "step"}, "choice": {"values"}}


@dataclass
class Dimension:
    key: str
    kind: str  # float, int or choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = 1
    values: list[Any] | None = None
    origin: str = "the search space"  # the file it was read from, for messages

    def suggest(self, trial) -> Any:
        """The value an Optuna trial draws."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step, log=self.log)
        if not self.encoded:
            return trial.suggest_categorical(self.key, self.values)
        return self.decode(trial.suggest_categorical(self.key, [json.dumps(value) for value in self.values]))

    @property
    def encoded(self) -> bool:
        """Choices that are lists or mappings are drawn by their JSON text (Optuna's choices are scalars)."""
        return self.kind == "choice" and any(isinstance(value, list | dict) for value in self.values)

    def decode(self, stored: Any) -> Any:
        """A value as Optuna stored it -> the config value."""
        return json.loads(stored) if self.encoded and isinstance(stored, str) else stored

    def corners(self) -> list[Any]:
        """The values that must be valid for any draw to be: both ends, or every choice."""
        if self.kind == "choice":
            return list(self.values)
        ends = [self.low, self.high]
        return [int(value) for value in ends] if self.kind == "int" else ends

    def grid(self, points: int) -> list[Any]:
        """``points`` evenly spaced values (log-spaced for ``log``); every choice."""
        import numpy as np

        if self.kind == "choice":
            return list(self.values)
        spaced = np.geomspace if self.log else np.linspace
        values = spaced(self.low, self.high, points)
        return sorted({int(round(v)) for v in values}) if self.kind == "int" else [float(f"{v:.4g}") for v in values]


def read_space(path: str | Path, base: Config) -> list[Dimension]:
    """The dimensions of a space file, checked against the config schema and the base config."""
    from maskcls.recipebook import resolve_recipe

    path = resolve_recipe(path, "space")  # a shipped space's name works as well as a file
    raw = read_yaml_mapping(path, "space")
    if not raw:
        raise ConfigError(
            f"{path}: no keys to search (e.g. optim.lr: {{type: float, low: 1e-4, high: 1e-2, log: true}})"
        )
    dimensions = [parse_dimension(key, spec, path) for key, spec in raw.items()]
    for dimension in dimensions:
        for value in dimension.corners():
            variant_config(base, {dimension.key: value}, base.name, None, str(path))  # names the key when invalid
    return dimensions


def parse_dimension(key: str, spec: Any, path: Path) -> Dimension:
    where = f"{path}: {key}"
    if key in FIXED_KEYS:
        raise ConfigError(f"{where}: a search keeps {key} fixed (trials are compared on the same data and split)")
    check_known_keys(set_dotted({}, key, None), Config, str(path))
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise ConfigError(f"{where}: expected {{type: float|int|choice, ...}} or a list of choices, got {spec!r}")
    kind = spec["type"]
    unknown = set(spec) - KINDS[kind] - {"type"}
    if unknown:
        allowed = ", ".join(sorted(KINDS[kind]))
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))} for type {kind} (allowed: {allowed})"
        )
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or len(values) < 2:
            raise ConfigError(f"{where}: a choice needs a list of at least two values")
        return Dimension(key, kind, values=values, origin=str(path))
    low, high = number(spec.get("low")), number(spec.get("high"))
    if low is None or high is None or low >= high:
        raise ConfigError(f"{where}: needs numbers low < high, got low={spec.get('low')!r} high={spec.get('high')!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if kind == "float":
        return Dimension(key, kind, float(low), float(high), log, origin=str(path))
    return Dimension(key, kind, *int_range(spec, where), log, int_step(spec, log, where), origin=str(path))


def int_range(spec: dict, where: str) -> tuple[int, int]:
    """An int range's ends, which must be whole numbers (``2.5`` is refused, not rounded)."""
    ends = []
    for field in ("low", "high"):
        value = number(spec[field])
        if not float(value).is_integer():
            raise ConfigError(f"{where}: an int range needs whole numbers, got {field}={spec[field]!r}")
        ends.append(int(value))
    return ends[0], ends[1]


def int_step(spec: dict, log: bool, where: str) -> int:
    """An int range's step: a whole number >= 1, and 1 on a log range (Optuna cannot step a log scale)."""
    step = spec.get("step", 1)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ConfigError(f"{where}: step must be a whole number >= 1, got {step!r}")
    if log and step != 1:
        raise ConfigError(f"{where}: a log range cannot have a step (got step={step}); drop log or step")
    return step


def number(value: Any) -> float | None:
    """A YAML number; ``1e-4`` too, which YAML 1.1 reads as text."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
