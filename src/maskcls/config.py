"""Experiment configuration: pydantic models loaded from YAML, overridden by ``key=value``.

Every section forbids unknown keys; a misspelt key fails naming the key and the closest valid
one, e.g. ``config.yaml: unknown key 'data.corection' (did you mean 'data.corrections'?)``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maskcls.choices import AUGMENTATIONS, TTA_MODES
from maskcls.errors import ConfigError
from maskcls.labels import AGE_BORDERS, validate_age_borders
from maskcls.registry import unknown_name

OPTIMIZER_NAMES = ("adam", "adamw", "madgrad", "sgd")
SCHEDULER_NAMES = ("cosine", "cyclic", "none", "step")
LOSS_NAMES = ("cross_entropy", "f1", "focal", "label_smoothing", "symmetric_ce")
"""The fixed names of training/optim.py's and training/losses.py's registries (a test keeps them
equal), checked here so that a misspelt name fails before PyTorch is imported."""


def known_name(kind: str, known: tuple[str, ...]) -> AfterValidator:
    """A pydantic check: the value must be one of ``known``, else the registry's own message."""

    def check(value: str) -> str:
        if value not in known:
            raise ValueError(unknown_name(kind, value, known))
        return value

    return AfterValidator(check)


OptimizerName = Annotated[str, known_name("optimizer", OPTIMIZER_NAMES)]
SchedulerName = Annotated[str, known_name("scheduler", SCHEDULER_NAMES)]
LossName = Annotated[str, known_name("loss", LOSS_NAMES)]


DEVICE_NAMES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_name_value(name: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (a pydantic check: the error names the
    key); whether this machine has it is checked where it is used (``engine.resolve_device``)."""
    if not DEVICE_NAMES.fullmatch(name):
        raise ValueError(f"{name!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return name


def check_device_name(name: str, what: str = "device") -> str:
    """:func:`device_name_value` for a name that comes from an option, not from the config."""
    try:
        return device_name_value(name)
    except ValueError as error:
        raise ConfigError(f"{what}: {error}") from None


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    root: str = "demo-data"
    """Dataset folder in the competition layout (``train/``, ``eval/``)."""
    corrections: str | None = None
    """YAML file of per-profile label fixes, applied when the image table is built."""
    strict: bool = False
    """Stop on the first problem found in the data (otherwise warn and skip)."""
    age_borders: tuple[int, int] = AGE_BORDERS
    """Age cuts used for training labels; evaluation always uses the real (30, 60)."""
    cache: bool = True
    """Decode and resize each image once into a memory-mapped cache (``false``: decode every epoch)."""
    pseudo: str | None = None
    """Pseudo-labelled test photos (``maskcls pseudo``'s pseudo_labels-HASH.csv) added to every fold's
    training photos, never to its validation photos."""
    teacher: str | None = None
    """A teacher's 18-class probabilities per photo (``maskcls distill``'s teacher-HASH.csv: path,
    p0..p17): the training photos it lists learn them too (``train.distill`` says how much), the test
    photos it lists are added to the training photos with its most likely class as their label."""

    @field_validator("age_borders")
    @classmethod
    def _increasing(cls, value: tuple[int, int]) -> tuple[int, int]:
        validate_age_borders(value)
        return value

    @field_validator("root", "corrections", "pseudo", "teacher")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        """Kept as an absolute path (resolved against the current folder), so that a run folder
        says where its data is from wherever it is read later (report, --group-people, resume)."""
        return str(Path(value).expanduser().absolute()) if value else value


class ModelConfig(Section):
    name: str = "resnet18"
    """Any timm model name."""
    head: Literal["single", "multi"] = "single"
    """One 18-class head, or three heads (mask 3, gender 2, age 3)."""
    head_weights: dict[str, float] = {}
    """Loss weight per head for ``multi``: mask, gender, age (default 1 each)."""
    age_head: Literal["classes", "ordinal", "regression", "distribution"] = "classes"
    """The age head of ``multi``: 3 age groups, or over exact ages: ordinal (CORN), regression
    (Laplace) or distribution (1-year bins); the last three also estimate the age in years."""
    pretrained: bool = False
    weights: str | None = None
    """Weights for the backbone instead of downloading: a state-dict file, ``package:NAME``, or a
    maskcls checkpoint (``RUN/best.pt``) to fine-tune from one's own run; ``{fold}`` in the path
    stands for the run's fold (``GROUP/fold{fold}/best.pt``: each fold from its own model)."""
    dropout: float = 0.0
    normalize: Literal["auto", "weights", "dataset"] = "auto"
    """Input mean/std: the pretrained weights' own (timm's ``pretrained_cfg``; a maskcls
    checkpoint's), or the training images' channel statistics; ``auto``: the weights' own when the
    backbone starts from weights (``pretrained`` or ``weights``), the dataset's when from scratch."""

    @model_validator(mode="after")
    def _age_head_needs_three_heads(self) -> ModelConfig:
        if self.age_head != "classes" and self.head != "multi":
            raise ValueError(f"age_head={self.age_head} needs head=multi (three heads)")
        return self


class LossPart(Section):
    name: LossName = "cross_entropy"
    weight: float = 1.0
    options: dict[str, Any] = {}


class OptimConfig(Section):
    name: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    options: dict[str, Any] = {}
    scheduler: SchedulerName = "cosine"
    scheduler_options: dict[str, Any] = {}
    warmup_epochs: float = 0.0
    decay_bias_and_norm: bool = False
    """Apply weight decay to biases and norm weights too (timm and torchvision leave them out)."""
    grad_clip: float | None = None


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    image_size: tuple[int, int] = (96, 128)
    """(width, height) the images are resized to, once, in the cache."""
    augmentation: Literal[AUGMENTATIONS] = "seed"
    mixing: Literal["none", "cutmix_vertical", "cutmix", "mixup"] = "none"
    mixing_probability: float = 0.5
    balanced_sampling: bool = False
    valid_tta: Literal[TTA_MODES] = "none"
    """Test-time augmentation of the validation pass (so of valid_f1, the best epoch and the
    out-of-fold table that ``calibrate`` fits on): ``flip`` averages each image with its mirror, as
    ``predict --tta flip`` does for the test set; it doubles the validation's cost."""
    folds: int = Field(5, ge=2)
    fold: int = Field(0, ge=0)
    holdout: float | None = None
    """Validation share of people for a plain holdout split instead of folds."""
    early_stopping: int | None = None
    """Stop after this many epochs without a better valid macro F1."""
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    device: Annotated[str, AfterValidator(device_name_value)] = "auto"
    """auto (CUDA when present), cpu, cuda, cuda:N or mps."""
    threads: int | None = None
    cache_dir: str | None = None
    """Decoded-image cache folder; by default ``cache/`` in the runs folder, where predict finds it."""
    deterministic: bool = False
    accumulate: int = Field(1, ge=1)
    """Split each batch into this many parts whose gradients add up before the step: the same
    effective batch with a part of the activation memory (large photos on a small machine). Exact
    for losses that are means over images; ``f1`` and BatchNorm statistics see each part alone."""
    ema: float | None = Field(None, gt=0, lt=1)
    """Keep an exponential moving average of the weights with this decay (timm's ``ModelEmaV3``,
    warming up as ``1 - (1 + step)^(-2/3)`` until it reaches the decay): it is what validation scores,
    best.pt holds and predict uses; e.g. 0.998. None: off."""
    distill: float = Field(0.5, ge=0, le=1)
    """With ``data.teacher``: the share of the loss that learns the teacher's probabilities (the rest
    learns the labels); 1 learns the teacher alone."""
    limit_batches: int | None = Field(None, ge=1)
    """Train on the first N batches of every epoch only (validation stays whole): a smoke test of a
    recipe's memory, speed and checkpoint at its real size."""


class TrackConfig(Section):
    uri: str | None = None
    """MLflow tracking server (``http://host:5000``) or store (``sqlite:///mlflow.db``) to log the
    run to; ``--track`` overrides it, ``MLFLOW_TRACKING_URI`` stands in when neither is set."""
    experiment: str = "maskcls"
    """The MLflow experiment the runs go into (a team shares one per competition)."""
    optional: bool = False
    """A server that does not answer at start is a warning, not an error (``--track-optional``)."""


class Config(Section):
    name: str = "experiment"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: list[LossPart] = [LossPart()]
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    track: TrackConfig = TrackConfig()


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    schema: type[BaseModel] = Config,
    base: dict[str, Any] | None = None,
) -> BaseModel:
    """Read a YAML file (or start from ``base``, a plain config, or from defaults), apply
    ``a.b=value`` overrides, validate."""
    if path:
        from maskcls.recipebook import resolve_recipe

        path = resolve_recipe(path)  # a shipped recipe's name works as well as a file
    source = str(path) if path else "the base recipe" if base else "defaults"
    raw: dict[str, Any] = read_yaml_mapping(Path(path)) if path else copy.deepcopy(base or {})
    sources: dict[str, str] = {}  # dotted key -> the -o that set it, to blame the right one
    for override in overrides or []:
        key, value = parse_override(override)
        check_known_keys(set_dotted({}, key, value), schema, f"override {override!r}")
        set_dotted(raw, key, value)
        sources[key] = f"override {override!r}"
    check_known_keys(raw, schema, source)
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(*format_validation_error(error, source, sources)) from None


def changed_config(
    base: dict[str, Any], changes: dict[str, Any], overrides: list[str] = (), defaults: dict[str, Any] | None = None
) -> Config:
    """``base`` (a plain config, e.g. a group's recipe) with ``defaults`` (dotted key -> value), then
    the user's ``overrides`` (``a.b=value``), then ``changes``, validated like any recipe."""
    given = [*as_overrides(defaults or {}), *overrides, *as_overrides(changes)]
    return load_config(None, given, base=base)


def as_overrides(changes: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in changes.items()]


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain YAML
    keeps the last, so the first value would be silently lost)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice (also on line {seen[key]})"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: Path, kind: str = "recipe") -> dict[str, Any]:
    """A YAML file of keys (a recipe, a search space, corrections); a missing one names the
    shipped files of that ``kind`` that a bare name would find."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        from maskcls.recipebook import recipe_names

        shipped = ", ".join(recipe_names(kind))
        raise ConfigError(f"{path}: {kind} file not found (shipped, by name: {shipped})") from None
    except ConfigError as error:
        raise ConfigError(f"{path} {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``optim.lr=3e-4`` -> ("optim.lr", 0.0003); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. data.strict=true")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> dict[str, Any]:
    """Set ``tree[a][b] = value`` for ``a.b``, creating sections on the way; returns ``tree``."""
    *parents, leaf = dotted_key.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
    return tree


def check_known_keys(raw: dict[str, Any], schema: type[BaseModel], source: str, prefix: str = "") -> None:
    """Fail on the first key the schema does not know, naming the closest valid key."""
    fields = schema.model_fields
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {dotted!r}{unknown_key_hint(key, schema, prefix)}")
        section = section_type(fields[key].annotation)
        if section is not None and isinstance(value, dict):
            check_known_keys(value, section, source, prefix=f"{dotted}.")


def section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # Optional[Section]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def unknown_key_hint(key: str, schema: type[BaseModel], prefix: str) -> str:
    """The closest key of this section; at the top, a near-exact top key, else a section's key
    (``epochs`` -> ``train.epochs``), else the closest or the list of top keys."""
    fields = schema.model_fields
    if prefix or difflib.get_close_matches(key, list(fields), n=1, cutoff=0.8):
        return suggestion(key, fields, prefix)
    return leaf_suggestion(key, schema) or suggestion(key, fields)


def leaf_suggestion(key: str, schema: type[BaseModel]) -> str:
    """A top-level key that is a section's key (``epochs`` -> ``train.epochs``), or ""."""
    leaves = {}
    for name, field in schema.model_fields.items():
        section = section_type(field.annotation)
        for leaf in section.model_fields if section is not None else ():
            leaves.setdefault(leaf, f"{name}.{leaf}")
    close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.8)
    return f" (did you mean {leaves[close[0]]!r}?)" if close else ""


def suggestion(key: str, known: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    if close:
        return f" (did you mean {prefix + close[0]!r}?)"
    return f" (valid keys: {', '.join(prefix + name for name in known)})"


def format_validation_error(error: ValidationError, source: str, sources: dict[str, str] | None = None) -> list[str]:
    """One line per wrong value, naming where it came from: the ``-o`` that set it (``sources``:
    dotted key -> its origin, the longest matching key wins), else ``source``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top)"
        origins = [key for key in sources or {} if where == key or where.startswith(f"{key}.")]
        origin = sources[max(origins, key=len)] if origins else source
        message = item["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
        lines.append(f"{origin}: {where}: {message}")
    return lines


MACHINE_KEYS = (
    "train.device", "train.threads", "train.cache_dir", "data.cache", "track.uri", "track.experiment", "track.optional",
)  # fmt: skip
"""Settings of the machine, not of the model: where the cache lives, which device and how many
threads run, whether images are cached, where the run is tracked. They are not part of a
recipe's identity (a cv group, a sweep, a study, the runs table's hyperparameters), so a rerun
elsewhere is the same experiment."""


def recipe_dict(config: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The plain config without :data:`MACHINE_KEYS` (and the sections they leave empty, such as
    ``track``): what identifies an experiment; a config written before a key existed gets the key's
    default, so that it still names the same recipe."""
    if isinstance(config, dict):
        with contextlib.suppress(ValidationError):  # a config written before a key existed: its default
            config = Config.model_validate(config)
    plain = copy.deepcopy(config if isinstance(config, dict) else to_plain_dict(config))
    for key in MACHINE_KEYS:
        *parents, leaf = key.split(".")
        node = plain
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
        if parents and plain.get(parents[0]) == {}:
            del plain[parents[0]]
    return plain


def to_plain_dict(config: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists); the form stored in runs and checkpoints."""
    return config.model_dump(mode="json")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a plain config as ``section.key`` -> scalar; lists (and anything else) as text."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, bool | int | float | str):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, separators=(",", ":"), default=str)
    return flat
