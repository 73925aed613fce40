import json
import subprocess
import sys

import pandas as pd
import pytest

from maskcls.cli import app
from tests.helpers import empty_recipe, make_layout, run_cli, train_args

COMMANDS = [command.name or command.callback.__name__ for command in app.registered_commands]


def test_every_command_has_help(capsys):
    code, out, _ = run_cli("--help", capsys=capsys)
    assert code == 0
    for command in COMMANDS:
        assert command in out
        code, out_command, _ = run_cli(command, "--help", capsys=capsys)
        assert code == 0 and "Usage" in out_command


def test_stats_strict_exits_2_with_one_line_per_problem(synth_quirks, capsys):
    code, _, err = run_cli("stats", str(synth_quirks), "--strict", "--quiet", capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 9 and all(line.startswith("maskcls: error: ") for line in lines)
    assert any("eval/info.csv line" in line and "../secret.jpg" in line for line in lines)


def test_stats_lenient_json(synth_quirks, capsys):
    code, out, _ = run_cli("stats", str(synth_quirks), "--json", capsys=capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["train_people"] == 12
    assert sum(row["images"] for row in summary["classes"]) == summary["train_images"] == 82
    assert summary["problem_counts"]["unreadable_image"] == 1
    assert summary["ignored"]["macOS ._ files"] == 3


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code, _, err = run_cli("stats", str(tmp_path / "nowhere"), capsys=capsys)
    assert code == 2
    assert err.strip() == f"maskcls: error: {tmp_path / 'nowhere'}: dataset folder not found"


def test_synth_stats_and_sheet_through_the_installed_entry_point(tmp_path):
    data = tmp_path / "data"
    run = [sys.executable, "-m", "maskcls"]
    made = subprocess.run(
        [*run, "synth", str(data), "--people", "4", "--eval-people", "2", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "28 train + 14 eval images" in made.stdout
    stats = subprocess.run([*run, "stats", str(data)], capture_output=True, text=True, check=True)
    assert "4 people, 28 train images, 14 eval images" in stats.stdout
    sheet = subprocess.run(
        [*run, "sheet", str(data), str(tmp_path / "s.png"), "--people", "2"], capture_output=True, text=True, check=True
    )
    assert (tmp_path / "s.png").stat().st_size > 1000, sheet.stdout


def test_crop_command_reports_and_exit_code_says_unreadable(tmp_path, capsys):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45"])
    code, out, _ = run_cli(
        "crop", str(root), str(tmp_path / "a"), "--detector", "fixed", "--size", "30x40", capsys=capsys
    )
    assert code == 0 and "8 images cropped" in out
    (root / "train/images/000001_female_Asian_45/normal.jpg").write_bytes(b"garbage")
    code, _, err = run_cli("crop", str(root), str(tmp_path / "b"), "--detector", "fixed", capsys=capsys)
    assert code == 1 and "1 image(s) could not be read" in err
    code, _, err = run_cli("crop", str(root), str(tmp_path / "c"), "--size", "30by40", capsys=capsys)
    assert code == 2 and "expected WIDTHxHEIGHT" in err


def test_unknown_option_is_a_usage_error(capsys):
    code, _, err = run_cli("stats", "--bogus", capsys=capsys)
    assert code == 2 and "No such option" in err and "Traceback" not in err


def test_train_command_prints_the_best_epoch(synth_small, tmp_path, capsys):
    code, out, _ = run_cli(
        "train", str(empty_recipe(tmp_path)), "--data", str(synth_small), "--folds", "3",
        "--runs-dir", str(tmp_path / "runs"), "-q",
        "-o", "model.name=test_resnet", "-o", "train.epochs=1", "-o", "train.image_size=[24,32]",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", capsys=capsys,
    )  # fmt: skip
    assert code == 0 and "best valid macro F1" in out
    code, _, err = run_cli("train", "-o", "train.epoch=1", capsys=capsys)
    assert code == 2 and "did you mean 'train.epochs'" in err
    code, _, err = run_cli("train", "--data", str(synth_small), capsys=capsys)
    assert code == 2 and "maskcls train needs a recipe, e.g. `maskcls train cpu-pretrained --data DATA-faces`" in err


def test_train_prints_one_line_per_epoch_off_a_terminal_and_refuses_overrides_on_resume(synth_small, tmp_path, capsys):
    code, _, err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.epochs=2"), capsys=capsys)
    run = tmp_path / "runs/fb-fold0"
    summary = pd.read_csv(run / "summary.csv")
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert code == 0 and len(lines) == 2  # captured output is not a terminal: the lines are there all the same
    for line, row in zip(lines, summary.itertuples(), strict=True):
        assert line.startswith(f"epoch {row.epoch}/2  loss {row.train_loss:.4f}  valid loss {row.valid_loss:.4f}")
        assert f"valid F1 {row.valid_f1:.4f}" in line
    assert lines[0].endswith("best")
    quiet_code, _, quiet_err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.epochs=1", "-q"), capsys=capsys)
    assert quiet_code == 0 and "epoch 1/1" not in quiet_err
    code, _, err = run_cli("train", "--resume", str(run), "-o", "optim.lr=0.5", capsys=capsys)
    assert code == 2
    assert "a resume cannot change optim.lr: that would not continue the same run (only train.early_stopping" in err
    code, _, err = run_cli("train", "--resume", str(run), "-o", "train.epochs=1", capsys=capsys)
    assert code == 2 and "resume: train.epochs=1, but the run already trained 2 epochs" in err


def test_resume_with_more_epochs_stretches_the_schedule(synth_small, tmp_path, capsys):
    """2 epochs, then resumed to 4: the last two epochs have the learning rates of a 4-epoch run."""
    code, _, _ = run_cli(*train_args(synth_small, tmp_path, "-o", "train.epochs=2", "-q"), capsys=capsys)
    run = tmp_path / "runs/fb-fold0"
    code, _, err = run_cli("train", "--resume", str(run), "-o", "train.epochs=4", "-q", capsys=capsys)
    assert code == 0 and f"{run}: resuming after epoch 2 of 4" in err
    whole_args = train_args(synth_small, tmp_path, "-o", "train.epochs=4", "-q", "-o", "name=whole")
    assert run_cli(*whole_args, capsys=capsys)[0] == 0
    resumed = pd.read_csv(run / "summary.csv")
    whole = pd.read_csv(tmp_path / "runs/whole-fold0/summary.csv")
    assert list(resumed["epoch"]) == [1, 2, 3, 4]  # epochs count from 1
    assert list(resumed["lr"][2:]) == pytest.approx(list(whole["lr"][2:]), rel=1e-9)
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 4


def test_ctrl_c_names_the_resume_command_and_resume_says_where_it_continues(synth_small, tmp_path, capsys, monkeypatch):
    from maskcls.training import loop as training

    one_epoch = training.Trainer.one_epoch

    def interrupted_second_epoch(self, total):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return one_epoch(self, total)

    monkeypatch.setattr(training.Trainer, "one_epoch", interrupted_second_epoch)
    code, _, err = run_cli(*train_args(synth_small, tmp_path, "-o", "train.epochs=3", "-q"), capsys=capsys)
    run = tmp_path / "runs/fb-fold0"
    assert code == 130
    assert f"maskcls: interrupted after epoch 1 of 3; continue with: maskcls train --resume {run}" in err
    monkeypatch.setattr(training.Trainer, "one_epoch", one_epoch)
    code, _, err = run_cli("train", "--resume", str(run), "-q", capsys=capsys)
    assert code == 0 and f"maskcls: {run}: resuming after epoch 1 of 3" in err
    assert len(pd.read_csv(run / "summary.csv")) == 3


def test_resume_finds_the_runs_folder_of_the_run(tmp_path):
    from maskcls.rundir.folders import runs_root

    (tmp_path / "runs/folds").mkdir(parents=True)
    (tmp_path / "runs/a-cv3/fold1").mkdir(parents=True)
    (tmp_path / "runs/a-cv3/group.json").write_text("{}")
    (tmp_path / "runs/b-fold0").mkdir()
    assert runs_root(tmp_path / "runs/a-cv3/fold1") == tmp_path / "runs"
    assert runs_root(tmp_path / "runs/b-fold0") == tmp_path / "runs"
    for container, plan in (("s-tune", "tune.json"), ("s-sweep", "sweep.json")):  # a group inside a study or sweep
        (tmp_path / "runs" / container / "trial-0003/fold2").mkdir(parents=True)
        (tmp_path / "runs" / container / "trial-0003/group.json").write_text("{}")
        (tmp_path / "runs" / container / plan).write_text("{}")
        assert runs_root(tmp_path / "runs" / container / "trial-0003/fold2") == tmp_path / "runs"
        assert runs_root(tmp_path / "runs" / container / "trial-0003") == tmp_path / "runs"
    (tmp_path / "elsewhere/c-fold0").mkdir(parents=True)
    assert runs_root(tmp_path / "elsewhere/c-fold0") == tmp_path / "elsewhere"
