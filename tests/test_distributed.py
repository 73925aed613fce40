"""Real multi-process data parallel training: torchrun, 2 processes, gloo on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.data.cache import cached_images
from maskcls.inference.loading import load_run
from maskcls.inference.predict import torch_outputs
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.metrics import macro_f1
from maskcls.training.distributed import Distributed, merge_in_order


def test_shards_are_equal_disjoint_and_merge_back_in_order():
    order = np.arange(11)
    shards = [Distributed(rank, 3).shard(order) for rank in range(3)]
    assert [len(shard) for shard in shards] == [3, 3, 3]
    assert len(set(np.concatenate(shards).tolist())) == 9
    parts = [order[rank::3] for rank in range(3)]  # validation rows: nothing dropped
    assert merge_in_order(parts, 3).tolist() == order.tolist()
    assert Distributed().shard(order) is order


def test_torchrun_two_processes_one_run_folder_gathered_metrics(synth_small, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: ddp\n")
    options = [
        str(recipe), f"--data={synth_small}", "--runs-dir", str(tmp_path / "runs"), "-q",
        "-o", "model.name=test_resnet",
        "-o", "train.epochs=2", "-o", "train.image_size=[24,32]", "-o", "train.batch_size=32", "-o", "train.folds=3",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", "-o", "name=ddp",
    ]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    worker = [str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path)]  # maskcls train, keeping parameters
    done = subprocess.run([*command, *worker, *options], capture_output=True, text=True, env=environment, timeout=300)
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
    check_ranks_trained_one_model(tmp_path, run)
    check_gathered_probabilities_are_each_images_own(run, tmp_path / "cache")


def test_a_nan_on_one_rank_stops_every_rank_promptly_with_the_message(synth_small, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: nan\n")
    options = [
        str(Path(__file__).parent / "ddp_nan_worker.py"), str(recipe), f"--data={synth_small}", "--runs-dir",
        str(tmp_path / "runs"), "-q", "-o", "model.name=test_resnet", "-o", "train.epochs=1",
        "-o", "train.image_size=[24,32]", "-o", "train.batch_size=16", "-o", "train.folds=3",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", "-o", "name=nan",
    ]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *options]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # gloo's own timeout is 30 minutes: a rank left waiting in all-reduce would hit the 120 s here
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode != 0
    assert "maskcls: error: epoch 1: the loss became NaN or infinite on another process at batch 2" in done.stderr
    assert "maskcls: error: epoch 1: loss became nan at batch 2: lower the learning rate" in done.stderr


def check_ranks_trained_one_model(dump, run):
    """Gradients were averaged: after the last step both ranks hold the same parameters, which are
    the ones rank 0 saved, and they moved away from the first epoch's."""
    ranks = [torch.load(dump / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
    saved = torch.load(run / "last.pt", weights_only=True)["model"]
    for name, value in ranks[0].items():
        assert torch.equal(saved[name], value), name


def check_gathered_probabilities_are_each_images_own(run, cache_dir):
    """Each rank scored its own shard: every gathered row equals that image predicted in one
    process by the saved best model, and the F1 in result.json is the F1 of these rows."""
    gathered = pd.read_csv(run / "valid_probabilities.csv")
    loaded = load_run(run, "cpu")
    data_root = Path(json.loads((run / "config.json").read_text())["data"]["root"])
    images = cached_images(data_root, list(gathered["path"]), loaded.image_size, cache_dir)
    alone = torch_outputs(loaded, images, 16, "none")
    assert np.allclose(gathered[PROBABILITY_COLUMNS].to_numpy(), alone, atol=1e-4)
    recomputed = macro_f1(gathered["target"].to_numpy(), gathered[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    assert json.loads((run / "result.json").read_text())["valid_f1"] == pytest.approx(recomputed, abs=1e-6)
