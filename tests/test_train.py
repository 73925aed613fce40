import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.errors import Interrupted, UserError
from maskcls.training.train import fit
from tests.helpers import tiny_config

TIMING = ["train_images_per_second", "seconds"]


def config_for(data, tmp_path, *overrides):
    two_epochs = (
        "train.epochs=2",
        "name=t",
        "train.mixing=cutmix_vertical",
        "train.augmentation=seed",
        "optim.lr=3e-3",
    )
    return tiny_config(data, tmp_path, *two_epochs, *overrides)


def test_run_folder_holds_everything(synth_small, tmp_path):
    result = fit(config_for(synth_small, tmp_path, "model.head=multi"), runs_dir=tmp_path / "runs")
    run = result.folder
    names = {path.name for path in run.iterdir()}
    assert {"config.json", "summary.csv", "last.pt", "best.pt", "valid_probabilities.csv", "confusion.png"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["epoch"]) == [1, 2] and summary["valid_f1"].between(0, 1).all()
    best = summary.loc[summary["epoch"] == json.loads((run / "result.json").read_text())["best_epoch"]].iloc[0]
    assert (result.best_epoch, result.epochs_run, result.valid_f1) == (best["epoch"], 2, best["valid_f1"])
    assert result.valid_f1_by_attribute == {head: best[f"valid_f1_{head}"] for head in ("mask", "gender", "age")}
    assert result.train_images_per_second == summary["train_images_per_second"].mean()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["head"] == "multi" and len(config["mean"]) == 3 and "torch" in config
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert checkpoint["config"]["train"]["epochs"] == 2
    probabilities = pd.read_csv(run / "valid_probabilities.csv")
    assert probabilities.filter(regex=r"^p\d+$").shape[1] == 18
    assert (tmp_path / "runs/folds").is_dir()
    again = fit(config_for(synth_small, tmp_path, "train.epochs=1"), runs_dir=tmp_path / "runs").folder
    assert again.name == "t-fold0-2"  # a new, unique run folder


def test_inputs_are_normalised_as_the_weights_were_trained_or_by_the_dataset(synth_small, tmp_path):
    from maskcls.data.cache import cached_images
    from maskcls.data.transforms import channel_stats
    from maskcls.training.prepare import prepare_data

    def normalization(*overrides):
        run = fit(config_for(synth_small, tmp_path, "train.epochs=1", *overrides), runs_dir=tmp_path / "runs").folder
        config = json.loads((run / "config.json").read_text())
        checkpoint = torch.load(run / "best.pt", weights_only=True)
        assert (checkpoint["mean"], checkpoint["std"]) == (config["mean"], config["std"])  # what predict uses
        return run, (config["mean"], config["std"])

    scratch, stats = normalization()  # from scratch: the training images' own statistics
    data = prepare_data(config_for(synth_small, tmp_path), tmp_path / "runs")
    images = cached_images(synth_small, list(data.table["path"]), (24, 32), tmp_path / "cache")
    assert stats == channel_stats(images, np.sort(data.train_rows))
    assert normalization("model.normalize=weights")[1] == ([0.5] * 3, [0.5] * 3)  # timm's test_resnet config
    assert normalization("model.name=resnet10t", "model.normalize=weights")[1] == (
        [0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
    )  # fmt: skip
    tuned = normalization(f"model.weights={scratch / 'best.pt'}")  # auto: a maskcls checkpoint's own
    assert tuned[1] == stats


def test_resume_continues_exactly_where_a_killed_run_stopped(synth_small, tmp_path):
    whole = fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "a").folder

    def kill_in_second_epoch(done, total):
        if done > total // 2 + 40:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"interrupted after epoch 1 of 2; continue with: maskcls train --resume"):
        fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "b", progress=kill_in_second_epoch)
    (killed,) = (tmp_path / "b").glob("t-fold0*")
    assert len(pd.read_csv(killed / "summary.csv")) == 1
    resumed = fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "b", resume=killed).folder
    assert resumed == killed
    expected = pd.read_csv(whole / "summary.csv").drop(columns=TIMING)
    got = pd.read_csv(resumed / "summary.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(got, expected)


def test_a_weight_average_is_what_validation_scores_best_pt_keeps_and_a_resume_continues(synth_small, tmp_path):
    from maskcls.data.cache import cached_images
    from maskcls.inference.loading import load_run
    from maskcls.inference.predict import torch_outputs
    from maskcls.labels import PROBABILITY_COLUMNS
    from maskcls.rundir.checkpoint import load_checkpoint

    config = config_for(synth_small, tmp_path, "train.ema=0.9")
    whole = fit(config, runs_dir=tmp_path / "a").folder
    checkpoint = load_checkpoint(whole / "best.pt")
    averaged, trained = checkpoint["model"], checkpoint["trained_model"]
    assert any(not torch.equal(averaged[key], trained[key]) for key in averaged if averaged[key].is_floating_point())
    valid = pd.read_csv(whole / "valid_probabilities.csv")  # scored with the average: predict from best.pt agrees
    images = cached_images(synth_small, list(valid["path"]), (24, 32), tmp_path / "cache")
    outputs = torch_outputs(load_run(whole, "cpu"), images, batch_size=64, tta="none")
    np.testing.assert_allclose(outputs, valid[PROBABILITY_COLUMNS].to_numpy(), atol=2e-6)

    def kill_in_second_epoch(done, total):
        if done > total // 2 + 40:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        fit(config, runs_dir=tmp_path / "b", progress=kill_in_second_epoch)
    (killed,) = (tmp_path / "b").glob("t-fold0*")
    resumed = fit(config, runs_dir=tmp_path / "b", resume=killed).folder
    expected = pd.read_csv(whole / "summary.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(pd.read_csv(resumed / "summary.csv").drop(columns=TIMING), expected)
    again = load_checkpoint(resumed / "last.pt")
    for key, value in load_checkpoint(whole / "last.pt")["model"].items():
        assert torch.equal(again["model"][key], value), key


def test_uncached_decode_path_trains_the_same_model(synth_small, tmp_path):
    cached = fit(config_for(synth_small, tmp_path, "train.epochs=1"), runs_dir=tmp_path / "a").folder
    decoded = fit(
        config_for(synth_small, tmp_path, "train.epochs=1", "data.cache=false"), runs_dir=tmp_path / "b"
    ).folder
    expected = pd.read_csv(cached / "summary.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(pd.read_csv(decoded / "summary.csv").drop(columns=TIMING), expected)


def test_early_stopping_stops_after_patience_epochs_without_improvement(synth_small, tmp_path):
    config = config_for(synth_small, tmp_path, "train.epochs=8", "train.early_stopping=2", "optim.lr=0")
    summary = pd.read_csv(fit(config, runs_dir=tmp_path / "runs").folder / "summary.csv")
    best, stale, stopped_at = -1.0, 0, None
    for epoch, f1 in zip(summary["epoch"], summary["valid_f1"], strict=True):
        best, stale = (f1, 0) if f1 > best else (best, stale + 1)
        if stale >= 2:
            stopped_at = epoch
            break
    assert stopped_at is not None and stopped_at < 8  # lr 0: nothing improves, so it stops early
    assert list(summary["epoch"]) == list(range(1, stopped_at + 1))


def test_nan_loss_stops_with_the_last_good_checkpoint_kept(synth_small, tmp_path, monkeypatch):
    import maskcls.training.loop as train_module
    from maskcls.errors import NonFiniteLoss

    real_epoch, calls = train_module.train_one_epoch, []

    def diverge_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise NonFiniteLoss("loss became nan at batch 3: lower the learning rate")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", diverge_in_second_epoch)
    expected = r"epoch 2: loss became nan .*last good checkpoint is .*last\.pt \(after epoch 1\)"
    with pytest.raises(NonFiniteLoss, match=expected):
        fit(config_for(synth_small, tmp_path, "train.epochs=3"), runs_dir=tmp_path / "runs")
    (run,) = (tmp_path / "runs").glob("t-fold0*")
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    assert len(pd.read_csv(run / "summary.csv")) == 1


def test_a_split_side_lacking_a_class_is_named():
    from maskcls.training.prepare import missing_class_warnings

    labels = np.array([0, 0, 1, 1, 5, 2])
    messages = missing_class_warnings(labels, train_rows=np.array([0, 2, 4, 5]), valid_rows=np.array([1, 3]), fold=2)
    assert messages == [
        "fold 2: the validation part has no images of class 2 (wear / male / 60+), 5 (wear / female / 60+)"
    ]


def test_balanced_sampling_counts_the_training_rows_only():
    from maskcls.training.prepare import balanced_weights

    labels = np.array([0, 0, 0, 1, 1, 1, 1])  # rows 2, 5, 6 are validation images
    weights = balanced_weights(labels, np.array([0, 1, 3, 4]))
    assert weights.tolist() == [0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0]  # two training images of each class


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss=[{name: focal, options: {weight: [1, 2, 3]}}]", "loss[0].options.weight: expected 18 class weights"),
        ("optim.options={betas_: [0.9, 0.99]}", "optimizer 'adamw' has no option 'betas_' (did you mean 'betas'?)"),
        ("optim.scheduler_options={min_rate: 0.1}", "scheduler 'cosine' has no option 'min_rate'"),
        ("loss=[{name: focal, options: {gama: 2}}]", "loss 'focal' has no option 'gama' (did you mean 'gamma'?)"),
        ("model.name=resnet81", "unknown timm model 'resnet81'"),
    ],
)
def test_a_bad_name_or_option_fails_before_any_folder_is_made(synth_small, tmp_path, override, message):
    from maskcls.experiments.cv import cross_validate

    config = config_for(synth_small, tmp_path, override)
    with pytest.raises(UserError, match=re.escape(message)):
        fit(config, runs_dir=tmp_path / "runs")
    with pytest.raises(UserError, match=re.escape(message)):
        cross_validate(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_best_checkpoint_is_a_copy_of_the_improved_epochs_last(synth_small, tmp_path):
    run = fit(config_for(synth_small, tmp_path, "train.epochs=1"), runs_dir=tmp_path / "runs").folder
    assert (run / "best.pt").read_bytes() == (run / "last.pt").read_bytes()  # one epoch: it is the best


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint_and_resume_works(synth_small, tmp_path, monkeypatch):
    import errno

    from maskcls.errors import WriteFailed
    from maskcls.rundir import checkpoint as checkpoints

    real_save, calls = torch.save, []

    def save_until_full(state, path):
        calls.append(path)
        if len(calls) == 2:  # the second epoch's last.pt: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, path)

    monkeypatch.setattr(checkpoints.torch, "save", save_until_full)
    with pytest.raises(WriteFailed) as error:
        fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "runs")
    (run,) = (tmp_path / "runs").glob("t-fold0")
    assert str(error.value) == (
        f"{run / 'last.pt'}: could not be written ([Errno 28] No space left on device); the previous last.pt is "
        f"intact; free some space, then continue with: maskcls train --resume {run}"
    )
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    fit(config_for(synth_small, tmp_path), runs_dir=tmp_path / "runs", resume=run)
    assert len(pd.read_csv(run / "summary.csv")) == 2 and torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
