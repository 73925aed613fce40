"""``maskcls train`` under torchrun that also keeps each rank's final parameters.

    torchrun --nproc_per_node 2 tests/ddp_worker.py DUMP_DIR [train options...]

For test_distributed: after training, rank r saves its model's parameters to DUMP_DIR/rankR.pt,
so the test can check that data-parallel training kept every rank's model the same.
"""

import sys
from pathlib import Path

import torch

import maskcls.training.loop as training
from maskcls.cli import main

dump = Path(sys.argv[1])
train_run = training.Trainer.run


def run_and_keep_parameters(self):
    train_run(self)
    parameters = {name: value.detach().cpu() for name, value in self.model.named_parameters()}
    torch.save(parameters, dump / f"rank{self.context.rank}.pt")


training.Trainer.run = run_and_keep_parameters
main(["train", *sys.argv[2:]])
