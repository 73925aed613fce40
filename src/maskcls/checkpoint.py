"""Checkpoints written atomically and loadable with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer, scheduler and scaler states, the epoch, the best score
so far, the random states (torch, numpy, the batch generator) and the config as a plain dict,
so that ``--resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskcls.errors import UserError
from maskcls.files import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign file
        raise UserError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from None


def numpy_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as tensors and plain values (weights_only-loadable)."""
    state = rng.bit_generator.state
    inner = state["state"]
    return {
        "bit_generator": state["bit_generator"],
        "state": torch.tensor([int(inner["state"]) >> 64, int(inner["state"]) & (2**64 - 1)], dtype=torch.uint64),
        "inc": torch.tensor([int(inner["inc"]) >> 64, int(inner["inc"]) & (2**64 - 1)], dtype=torch.uint64),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def restore_numpy_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    def join(pair: torch.Tensor) -> int:
        high, low = (int(v) for v in pair.tolist())
        return (high % 2**64) << 64 | (low % 2**64)

    rng.bit_generator.state = {
        "bit_generator": saved["bit_generator"],
        "state": {"state": join(saved["state"]), "inc": join(saved["inc"])},
        "has_uint32": saved["has_uint32"],
        "uinteger": saved["uinteger"],
    }
