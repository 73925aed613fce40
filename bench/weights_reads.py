"""How many times one `maskcls train` reads the file given as model.weights (torch.load calls).

python bench/weights_reads.py DATA WORK      (DATA: a small synthetic set)
"""

import sys
from pathlib import Path

import torch

from maskcls.config import load_config
from maskcls.training.train import fit

data, work = Path(sys.argv[1]), Path(sys.argv[2])
base = [
    f"data.root={data}",
    "model.name=test_resnet",
    "train.epochs=1",
    "train.image_size=[24,32]",
    f"train.cache_dir={work / 'cache'}",
    "train.folds=3",
]
first = fit(load_config(None, [*base, "name=a"]), runs_dir=work / "runs").folder
real, reads = torch.load, []
torch.load = lambda path, *a, **k: (reads.append(str(path)), real(path, *a, **k))[1]
fit(load_config(None, [*base, "name=b", f"model.weights={first / 'best.pt'}"]), runs_dir=work / "runs")
print("reads of the weights file in one fit:", sum(p.endswith("best.pt") and "a-fold0" in p for p in reads))
