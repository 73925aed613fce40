"""Multi-process data parallel training on top of torch.distributed (torchrun + DDP).

``torchrun --nproc_per_node 2 -m maskcls train CONFIG`` starts two processes; each reads its
rank from the environment torchrun sets. The backend is NCCL when each process has its own GPU,
gloo otherwise (CPU). A single process (no torchrun) gets ``Distributed(rank=0, world_size=1)``
and every helper here does nothing, so the same training code serves both.

Rank 0 alone writes the run folder; the others learn its path by broadcast. Each rank trains on
its own shard of every epoch's shuffled order and evaluates its own shard of the validation
rows; predictions and losses are gathered so that every rank computes the same metrics (and so
takes the same early-stopping decision).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's part of ``order``: every rank gets the same count (the tail that does not
        divide evenly is dropped, at most world_size - 1 items), so all ranks run equal steps."""
        if not self.enabled:
            return order
        usable = len(order) - len(order) % self.world_size
        return order[self.rank : usable : self.world_size]

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every rank, in rank order (a one-item list in a single process)."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def is_main_process() -> bool:
    """False in the processes torchrun starts with a rank above 0 (they print nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def start_from_environment(device_name: str = "auto") -> tuple[Distributed, str]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else run alone.

    Returns the context and the device this process should use (``cuda:LOCAL_RANK`` with GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(rank, world_size, local_rank), device_name


def stop(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def merge_in_order(parts: list[np.ndarray], world_size: int) -> np.ndarray:
    """Undo :meth:`Distributed.shard` for rows sharded with ``order[rank::world_size]`` (no
    rows dropped): interleave the ranks' results back into the original order."""
    if world_size == 1:
        return parts[0]
    total = sum(len(part) for part in parts)
    merged = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for rank, part in enumerate(parts):
        merged[rank::world_size] = part
    return merged


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any (one all-reduce of one number); ``flag``
    itself in a single process. Ranks that must stop together (a non-finite loss on one shard)
    agree through this before the next collective step, so none waits for a rank that left."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)
