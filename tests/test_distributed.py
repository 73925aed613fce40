"""Real multi-process data parallel training: torchrun, 2 processes, gloo on the CPU."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from maskcls.distributed import Distributed, merge_in_order


def test_shards_are_equal_disjoint_and_merge_back_in_order():
    order = np.arange(11)
    shards = [Distributed(rank, 3).shard(order) for rank in range(3)]
    assert [len(shard) for shard in shards] == [3, 3, 3]
    assert len(set(np.concatenate(shards).tolist())) == 9
    parts = [order[rank::3] for rank in range(3)]  # validation rows: nothing dropped
    assert merge_in_order(parts, 3).tolist() == order.tolist()
    assert Distributed().shard(order) is order


def test_torchrun_two_processes_one_run_folder_gathered_metrics(synth_small, tmp_path):
    options = [
        f"--data={synth_small}", "--runs-dir", str(tmp_path / "runs"), "-q", "-o", "model.name=test_resnet",
        "-o", "train.epochs=2", "-o", "train.image_size=[24,32]", "-o", "train.batch_size=32", "-o", "train.folds=3",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", "-o", "name=ddp",
    ]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*command, "-m", "maskcls", "train", *options], capture_output=True, text=True, env=environment, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best valid macro F1") == 1  # rank 0 alone reports
    runs = [path for path in (tmp_path / "runs").iterdir() if path.name not in ("folds", "hparams")]
    assert [path.name for path in runs] == ["ddp-fold0"]  # rank 0 alone writes
    assert [path.name for path in (tmp_path / "runs/hparams").iterdir() if path.is_dir()] == ["ddp-fold0"]
    run = runs[0]
    assert len(pd.read_csv(run / "summary.csv")) == 2
    folds = pd.read_csv(next((tmp_path / "runs/folds").glob("*.csv")))
    valid_people = set(folds.loc[folds["fold"] == 0, folds.columns[0]])
    probabilities = pd.read_csv(run / "valid_probabilities.csv")
    assert set(probabilities["profile"]) == valid_people  # both ranks' validation shards gathered
    assert len(probabilities) == 7 * len(valid_people)
