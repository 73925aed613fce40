import json

import pandas as pd
import pytest
import torch

from maskcls.config import load_config
from maskcls.train import fit

TIMING = ["train_images_per_second", "seconds"]


def config_for(data, tmp_path, *overrides):
    return load_config(
        None,
        [
            f"data.root={data}", "model.name=test_resnet", "train.epochs=2", "train.image_size=[24,32]",
            f"train.cache_dir={tmp_path / 'cache'}", "train.batch_size=32", "train.folds=3", "name=t",
            "train.mixing=cutmix_vertical", "train.augmentation=seed", "optim.lr=3e-3", *overrides,
        ],
    )  # fmt: skip


def test_run_folder_holds_everything(synth_small, tmp_path):
    run = fit(config_for(synth_small, tmp_path, "model.head=multi"), runs_dir=tmp_path / "runs")
    names = {path.name for path in run.iterdir()}
    assert {"config.json", "summary.csv", "last.pt", "best.pt", "valid_probabilities.csv", "confusion.png"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["epoch"]) == [0, 1] and summary["valid_f1"].between(0, 1).all()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["head"] == "multi" and len(config["mean"]) == 3 and "torch" in config
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert checkpoint["config"]["train"]["epochs"] == 2
    probabilities = pd.read_csv(run / "valid_probabilities.csv")
    assert probabilities.filter(regex=r"^p\d+$").shape[1] == 18
    assert (tmp_path / "runs/folds").is_dir()
    again = fit(config_for(synth_small, tmp_path, "train.epochs=1"), runs_dir=tmp_path / "runs")
    assert again.name == "t-fold0-2"  # a new, unique run folder


def test_resume_continues_exactly_where_a_killed_run_stopped(synth_small, tmp_path):
    whole = fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "a")

    def kill_in_second_epoch(done, total):
        if done > total // 2 + 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "b", progress=kill_in_second_epoch)
    (killed,) = (tmp_path / "b").glob("t-fold0*")
    assert len(pd.read_csv(killed / "summary.csv")) == 1
    resumed = fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "b", resume=killed)
    assert resumed == killed
    expected = pd.read_csv(whole / "summary.csv").drop(columns=TIMING)
    got = pd.read_csv(resumed / "summary.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(got, expected)
