"""A trained run ready for inference: the model of its ``best.pt`` and what its inputs need.

A source is a run folder (its ``best.pt``) or a cv group folder (every fold's ``best.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskcls.config import Config
from maskcls.errors import UserError
from maskcls.files import read_json
from maskcls.rundir import names
from maskcls.rundir.checkpoint import load_checkpoint
from maskcls.training.engine import StepSettings, amp_dtype, finish, prepare, resolve_device
from maskcls.training.models import FaceAttributeModel, model_from_config


@dataclass
class LoadedRun:
    """A trained model ready for inference, with what its inputs need."""

    run: Path
    config: Config
    model: FaceAttributeModel
    settings: StepSettings

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.train.image_size)

    def input_batch(self, images) -> torch.Tensor:
        """uint8 images (N, H, W, 3) at :attr:`image_size` as the model's input: on its device,
        normalised, channels_last when it was trained so."""
        batch = torch.from_numpy(np.array(images))  # a copy: a memory map's pages are read-only
        return finish(prepare(batch, self.settings), self.settings)


def run_folders(sources: list[str | Path]) -> list[Path]:
    """Run folders named by ``sources``: a run itself, or every fold run of a cv group."""
    runs: list[Path] = []
    for source in map(Path, sources):
        found = names.kind(source)
        if found is names.Kind.GROUP:
            group = read_json(source / names.GROUP)
            runs.extend(source / name for name in group["runs"])
        elif found is names.Kind.RUN:
            runs.append(source)
        else:
            raise UserError(f"{source}: neither a run folder (best.pt) nor a cv group (group.json)")
    missing = [run for run in runs if not (run / names.BEST_CHECKPOINT).exists()]
    if missing:
        raise UserError(*(f"{run}: best.pt not found (the run has not finished an epoch)" for run in missing))
    return runs


def load_run(run: Path, device: str = "auto") -> LoadedRun:
    """The best checkpoint of ``run`` (``weights_only=True``) in eval mode."""
    checkpoint = load_checkpoint(run / names.BEST_CHECKPOINT)
    config = Config.model_validate(checkpoint["config"])
    model = model_from_config(config, pretrained_weights=False)
    model.load_state_dict(checkpoint["model"])
    target = resolve_device(device)
    channels_last = config.train.channels_last
    model = model.to(target, memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    amp = amp_dtype(config.train.amp, target)
    settings = StepSettings(
        device=target, amp_dtype=amp, channels_last=channels_last, mean=tuple(checkpoint["mean"]),
        std=tuple(checkpoint["std"]),
    )  # fmt: skip
    return LoadedRun(run, config, model, settings)
