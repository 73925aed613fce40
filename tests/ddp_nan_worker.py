"""``maskcls train`` under torchrun where rank 1's loss becomes NaN at its second batch.

    torchrun --nproc_per_node 2 tests/ddp_nan_worker.py [train options...]

For test_distributed: every rank must stop with the message, none may wait in an all-reduce.
"""

import os
import sys

import torch

import maskcls.training.losses as losses
from maskcls.cli import main

head_forward = losses.HeadLoss.forward
calls = {"count": 0}


def nan_on_rank_one(self, logits, target):
    value = head_forward(self, logits, target)
    calls["count"] += 1  # the second training batch (evaluation comes after the epoch's batches)
    if os.environ["RANK"] == "1" and calls["count"] == 2:
        return value * torch.tensor(float("nan"))
    return value


losses.HeadLoss.forward = nan_on_rank_one
main(["train", *sys.argv[1:]])
