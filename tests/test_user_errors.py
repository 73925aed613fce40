"""What a new user sees after a mistake: one line naming the option, key or file, before any
work, and nothing left behind; commands that would do nothing say so."""

import logging
import re
import sys

import pandas as pd
import pytest
import torch

from maskcls.config import load_config
from maskcls.errors import ConfigError, Interrupted, UserError
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS
from tests.helpers import run_cli, tiny_config, train_args


def tiny(data, tmp_path, *overrides):
    return tiny_config(data, tmp_path, "name=u", *overrides)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["predict", "RUN", "--data", "DATA", "--batch-size", "0"],
            "Invalid value for '--batch-size': Input should be greater than or equal to 1",
        ),
        (
            ["serve", "RUN", "--port", "99999"],
            "Invalid value for '--port': Input should be less than or equal to 65535",
        ),
        (
            ["tune", "C", "--space", "S", "--trials", "0"],
            "Invalid value for '--trials': Input should be greater than or equal to 1",
        ),
    ],
)
def test_option_ranges_are_checked_before_any_work(args, message, capsys):
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err


def test_a_device_the_machine_lacks_is_one_line_and_leaves_no_folder(synth_small, tmp_path, capsys):
    code, _, err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.device=cuda:99"), capsys=capsys)
    assert code == 2 and err.startswith("maskcls: error: train.device=cuda:99: this machine has")
    assert "Traceback" not in err and not (tmp_path / "runs").exists()
    code, _, err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.device=gpu"), capsys=capsys)
    assert code == 2 and "train.device: 'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.device=cuda"), capsys=capsys)
        assert err == "maskcls: error: train.device=cuda: this machine has no CUDA device; use cpu or auto\n"


def test_cv_on_devices_the_machine_lacks_is_refused_up_front(synth_small, tmp_path):
    from maskcls.experiments.cv import cross_validate

    with pytest.raises(UserError, match=r"^devices=cuda:98: this machine has"):
        cross_validate(tiny(synth_small, tmp_path), runs_dir=tmp_path / "runs", devices=["cuda:98", "cuda:99"])
    assert not (tmp_path / "runs").exists()


def test_crop_without_the_detector_package_names_it_and_makes_no_folder(synth_small, tmp_path, monkeypatch):
    from maskcls.faces.crop import crop_dataset

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"the mtcnn detector needs facenet-pytorch, which is not installed"):
        crop_dataset(synth_small, tmp_path / "faces")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_crop_says_what_is_kept_and_how_to_continue(synth_small, tmp_path, monkeypatch):
    from maskcls.faces import crop
    from maskcls.faces.crop import CropOptions, crop_dataset

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(crop, "crop_items", interrupted)
    with pytest.raises(Interrupted) as caught:
        crop_dataset(synth_small, tmp_path / "faces", CropOptions(detector="fixed"))
    assert str(caught.value) == (
        f"interrupted; the crops finished so far are kept (listed in {tmp_path / 'faces' / 'boxes.csv'}): run the "
        "same crop again to continue"
    )


def test_a_sweep_checks_every_variant_before_the_first_trains(synth_small, tmp_path):
    from maskcls.experiments.sweep import parse_vary, run_sweep

    with pytest.raises(ConfigError, match=r"unknown optimizer 'adamx' \(did you mean 'adam'\?\)"):
        run_sweep(tiny(synth_small, tmp_path), [parse_vary("optim.name=adamw,adamx")], runs_dir=tmp_path / "runs")
    with pytest.raises(UserError, match=r"optimizer 'adamw' has no option 'momentum'"):
        run_sweep(
            tiny(synth_small, tmp_path), [parse_vary("optim.options={},{momentum: 0.9}")], runs_dir=tmp_path / "runs"
        )
    assert not (tmp_path / "runs").exists()


def test_a_space_choice_naming_an_unknown_model_names_the_file_and_key(synth_small, tmp_path):
    from maskcls.experiments.space import read_space
    from maskcls.experiments.tune import TunePlan, tune

    base = tiny(synth_small, tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("model.name: [test_resnet, resnet81]\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(space))}: model.name='resnet81': unknown timm model"):
        tune(TunePlan(base=base, space=read_space(space, base), trials=1), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_maskcls_checkpoint_is_weights_to_fine_tune_from(synth_small, tmp_path, caplog):
    from maskcls.training.train import fit

    first = fit(tiny(synth_small, tmp_path), runs_dir=tmp_path / "runs").folder
    with caplog.at_level(logging.INFO, logger="maskcls"):
        second = fit(
            tiny(synth_small, tmp_path, f"model.weights={first / 'best.pt'}"), runs_dir=tmp_path / "runs"
        ).folder
    assert f"weights {first / 'best.pt'}: mapped exact names" in caplog.text
    backbone = torch.load(first / "best.pt", weights_only=True)["model"]
    started = torch.load(second / "last.pt", weights_only=True)["model"]  # one epoch later: close, not equal
    assert set(backbone) == set(started)
    other = tiny(synth_small, tmp_path, f"model.weights={first / 'best.pt'}", "model.name=resnet10t", "name=v")
    with pytest.raises(UserError, match=r"is a maskcls checkpoint of test_resnet, not model.name=resnet10t"):
        fit(other, runs_dir=tmp_path / "runs")
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match=r"list.pt: not a state dict .* nor a maskcls checkpoint"):
        fit(tiny(synth_small, tmp_path, f"model.weights={tmp_path / 'list.pt'}", "name=w"), runs_dir=tmp_path / "runs")
    assert sorted(path.name for path in (tmp_path / "runs").iterdir() if path.name.startswith(("u", "v", "w"))) == [
        "u-fold0",
        "u-fold0-2",
    ]  # no stub folder for a refused weights file


def test_pretrained_with_a_weights_file_says_which_is_used(synth_small, tmp_path, caplog):
    from maskcls.training.train import check_parts

    (tmp_path / "w.pt").write_bytes(b"")
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pt")
    with caplog.at_level(logging.WARNING, logger="maskcls"):
        check_parts(tiny(synth_small, tmp_path, "model.pretrained=true", f"model.weights={tmp_path / 'w.pt'}"))
    assert f"model.pretrained=true is not used: model.weights={tmp_path / 'w.pt'} gives the weights" in caplog.text


def test_ensemble_that_would_do_nothing_says_so(tmp_path, capsys):
    code, out, err = run_cli("ensemble", "a.csv", "b.csv", capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("maskcls: error: nothing to write or score: give --out FILE (a submission)")


def test_an_ensemble_that_loses_the_age_estimate_says_so(tmp_path, caplog):
    from maskcls.evaluation.ensemble import ensemble

    table = pd.DataFrame([[1 / 18] * 18] * 2, columns=PROBABILITY_COLUMNS)
    table.insert(0, "ImageID", ["a.jpg", "b.jpg"])
    table.to_csv(tmp_path / "classes.csv", index=False)
    table[AGE_ESTIMATE_COLUMN] = [30.0, 61.0]
    table.to_csv(tmp_path / "distribution.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="maskcls"):
        result = ensemble([tmp_path / "distribution.csv", tmp_path / "classes.csv"])
    assert AGE_ESTIMATE_COLUMN not in result.table
    assert f"the ensemble has no age_estimate: {tmp_path / 'classes.csv'} give none (another age head)" in caplog.text


def test_a_calibration_fitted_on_another_model_is_named_when_applied(tmp_path, caplog):
    from maskcls.evaluation.calibrate import Calibration, read_calibration
    from maskcls.inference.predict import warn_if_fitted_elsewhere

    Calibration(biases=[0.0] * 18, source=str(tmp_path / "runs/a-cv3/oof_probabilities.csv")).write(tmp_path / "c.json")
    calibration = read_calibration(tmp_path / "c.json")
    with caplog.at_level(logging.WARNING, logger="maskcls"):
        warn_if_fitted_elsewhere(calibration, [tmp_path / "runs/a-cv3"])
        assert caplog.text == ""
        warn_if_fitted_elsewhere(calibration, [tmp_path / "runs/b-cv3"])
    assert f"{tmp_path / 'c.json'} was fitted on {tmp_path / 'runs/a-cv3/oof_probabilities.csv'}, not on" in caplog.text


def test_a_key_given_twice_in_a_recipe_is_refused_with_both_lines(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochs: 3\n  batch_size: 8\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(recipe))} line 4: key 'epochs' is given twice \(also on"):
        load_config(recipe)


def test_a_dataset_part_given_for_the_dataset_names_the_dataset(synth_small, tmp_path):
    from maskcls.data.layout import read_dataset

    with pytest.raises(UserError, match=r"eval: this is the eval/ folder of a dataset; give the dataset folder"):
        read_dataset(synth_small / "eval", require_eval=True)


def test_train_help_says_what_the_recipe_argument_is(capsys):
    code, out, _ = run_cli("train", "--help", capsys=capsys)
    assert code == 0 and "defaults if omitted" not in out and "not with --resume" in " ".join(out.split())


def test_the_runs_table_leaves_out_columns_rather_than_squeezing_them():
    from rich.console import Console

    from maskcls.cli.render import rich_table

    columns = ["name", "date", "commit", "optim.lr", "train.augmentation", "model.name", "valid_f1", "cv_f1"]
    rows = [
        {"name": f"cpu-pretrained-sweep-lr/cpu-pretrained-lr_{k}e-3", "date": "2026-11-30 02:40", "commit": "99531c3a",
         "optim.lr": k / 1000, "train.augmentation": "strong", "model.name": "tf_efficientnet_lite0",
         "valid_f1": 0.7, "cv_f1": None}
        for k in range(1, 4)
    ]  # fmt: skip
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(rich_table(rows, columns, width=100))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    for whole in ("0.7000", "2026-11-30 02:40", "99531c3a", "optim.lr", "0.002"):
        assert whole in text  # no column squeezed
    assert "left out to fit: train.augmentation, model.name (--format csv shows every column)" in " ".join(text.split())
    assert "cv_f1" not in text  # empty in every row
