"""maskcls tune: the space file, a search on SQLite, pruning, the study's tables and report, and
workers sharing a study on a real PostgreSQL server (one of them killed with SIGKILL)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from maskcls.config import load_config
from maskcls.errors import ConfigError
from maskcls.experiments.catalog import find_entries
from maskcls.experiments.report import write_report
from maskcls.experiments.space import read_space
from maskcls.experiments.tune import (
    OverBudget,
    TrialObjective,
    TunePlan,
    check_budget,
    open_study,
    trial_epochs,
    tune,
    write_study_tables,
)
from maskcls.files import read_json
from tests.helpers import tiny_config
from tests.postgres import create_database, postgres_server

SPACE = """\
optim.lr: {type: float, low: 1e-3, high: 1e-2, log: true}
train.augmentation: [none, seed]
train.image_size: {type: choice, values: [[24, 32], [18, 24]]}
"""


def base_config(data, tmp_path, *overrides):
    return tiny_config(data, tmp_path, "name=tiny", "model.head=multi", "train.epochs=2", *overrides)


def write_space(tmp_path, text=SPACE) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_space_is_checked_against_the_config_before_anything_trains(tmp_path):
    base = load_config(None, ["name=tiny"])
    dimensions = read_space(write_space(tmp_path), base)
    assert [(d.key, d.kind) for d in dimensions] == [
        ("optim.lr", "float"), ("train.augmentation", "choice"), ("train.image_size", "choice"),
    ]  # fmt: skip
    assert (dimensions[0].low, dimensions[0].high, dimensions[0].log) == (1e-3, 1e-2, True)  # "1e-3" is text to YAML
    cases = {
        "optim.lrr: {type: float, low: 0.1, high: 1}": r"unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)",
        "train.augmentation: [none, sharp]": (
            r"space.yaml: train.augmentation: Input should be 'none', 'flip', 'light', 'seed' or"
        ),
        "optim.lr: {type: float, low: 0, high: 1, log: true}": "optim.lr: a log range needs low > 0",
        "optim.lr: {type: float, low: 2, high: 1}": "optim.lr: needs numbers low < high",
        "optim.lr: {type: float, low: 0.1, high: 1, steps: 3}": r"unknown field\(s\) steps for type float",
        "data.root: [a, b]": "a search keeps data.root fixed",
        "train.epochs: {type: int, low: 0, high: 3}": r"train.epochs: Input should be greater than or equal to 1",
        "train.epochs: {type: int, low: 1, high: 8, log: true, step: 2}": "a log range cannot have a step",
        "train.epochs: {type: int, low: 1, high: 8, step: 0}": "step must be a whole number >= 1, got 0",
        "train.epochs: {type: int, low: 1, high: 8, step: -2}": "step must be a whole number >= 1, got -2",
        "train.epochs: {type: int, low: 1, high: 8, step: 1.5}": "step must be a whole number >= 1, got 1.5",
        "train.epochs: {type: int, low: 1.5, high: 8}": "an int range needs whole numbers, got low=1.5",
        "optim.lr: {type: float, low: 0.1, high: 1, log: maybe}": "log must be true or false, got 'maybe'",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            read_space(write_space(tmp_path, text), base)


def test_a_search_on_sqlite_keeps_every_trial_as_a_run_and_writes_the_best_config(synth_small, tmp_path, capsys):
    base = base_config(synth_small, tmp_path)
    plan = TunePlan(base=base, space=read_space(write_space(tmp_path), base), trials=3, pruner="none")
    rows = []
    result = tune(plan, tmp_path / "runs", on_trial=rows.append)
    folder = result.folder
    assert folder == tmp_path / "runs" / "tiny-tune" and (folder / "study.db").exists()
    table = pd.read_csv(folder / "trials.csv")
    assert list(table["trial"]) == [0, 1, 2] and list(table["state"]) == ["complete"] * 3
    assert [row["trial"] for row in rows] == [0, 1, 2]
    for row in table.itertuples():
        run = folder / f"trial-{row.trial:04d}"
        config = json.loads((run / "config.json").read_text())
        assert config["optim"]["lr"] == row._6 and config["train"]["augmentation"] == row._7
        assert json.dumps(config["train"]["image_size"]) == row._8
        assert row.value == read_json(run / "result.json")["valid_f1"] and row.epochs == 2
        assert read_json(run / "trial.json")["state"] == "complete"
    summary = read_json(folder / "study.json")
    best = table.loc[table["value"].idxmax()]
    assert summary["best"]["trial"] == best["trial"] and summary["best"]["value"] == best["value"]
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 0} and summary["epochs_spent"] == 6
    assert summary["share_of_epochs_saved"] == 0.0
    assert result.trials == summary["trials"] and result.best == summary["best"] and result.epochs_spent == 6
    assert result.best_config == folder / "best.yaml"
    best_config = load_config(folder / "best.yaml")
    chosen = json.loads((folder / f"trial-{best['trial']:04d}" / "config.json").read_text())
    assert best_config.optim.lr == chosen["optim"]["lr"] and best_config.name == "tiny-best"
    assert list(best_config.train.image_size) == chosen["train"]["image_size"]
    entries = {entry.name: entry for entry in find_entries(tmp_path / "runs")}
    assert set(entries) == {f"tiny-tune/trial-000{k}" for k in range(3)}
    assert entries["tiny-tune/trial-0001"].config["optim.lr"] == table["optim.lr"][1]
    page = write_report(folder).read_text()
    for key in ("history", "importances", "parallel", "intermediate", "trials"):
        assert f'id="{key}"' in page
    assert page.count("data:image/png;base64,") == 4 and f"<td>{best['value']}</td>" in page
    tune(plan, tmp_path / "runs")  # the study has its trials: nothing more runs
    assert len(pd.read_csv(folder / "trials.csv")) == 3
    other = TunePlan(base=base_config(synth_small, tmp_path, "optim.lr=0.5"), space=plan.space, trials=3, pruner="none")
    with pytest.raises(Exception, match=r"holds a study with another base \(optim.lr 0.001 there, 0.5 here\)"):
        tune(other, tmp_path / "runs")


def test_a_pruned_trial_stops_and_its_folder_says_so(synth_small, tmp_path):
    base = base_config(synth_small, tmp_path, "train.epochs=3")
    plan = TunePlan(base=base, space=read_space(write_space(tmp_path), base), trials=1)
    folder = tmp_path / "runs" / "tiny-tune"
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    study.optimize(TrialObjective(plan, folder, runs_dir=tmp_path / "runs", progress=None), n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    run = folder / "trial-0000"
    record = read_json(run / "trial.json")
    assert record["state"] == "pruned" and record["epochs"] == 1 and "pruned after epoch 1" in record["error"]
    assert len(pd.read_csv(run / "summary.csv")) == 1 and not (run / "result.json").exists()
    (entry,) = find_entries(tmp_path / "runs")
    assert entry.status == "pruned after 1 epochs"


def test_a_trial_claimed_after_the_budget_is_refused():
    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(value=value, state=optuna.trial.TrialState.COMPLETE))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    running = study.ask()  # number 3: two finished and one failed before it
    check_budget(running, 3)  # a failed trial does not count
    late = study.ask()  # number 4: three trials (two finished, one running) before it
    with pytest.raises(OverBudget, match="trial 4: the study already had its 3 trials"):
        check_budget(late, 3)
    assert late.user_attrs["skipped"] == "the study already had its 3 trials"
    check_budget(late, 4)


def tune_command(data, tmp_path, url, trials, *extra):
    config = tmp_path / "base.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "shared", "data": {"root": str(data)},
                "model": {"name": "test_resnet", "head": "multi"},
                "train": {"epochs": 2, "batch_size": 32, "image_size": [24, 32], "folds": 3,
                          "cache_dir": str(tmp_path / "cache")},
            }
        )
    )  # fmt: skip
    return [
        sys.executable, "-m", "maskcls.cli", "tune", str(config), "--space", str(write_space(tmp_path)),
        "--trials", str(trials), "--storage", url, "--pruner", "none", "--runs-dir", str(tmp_path / "runs"),
        "--quiet", *extra,
    ]  # fmt: skip


def study_states(url: str) -> dict[int, str]:
    study = optuna.load_study(study_name="shared", storage=url)
    return {trial.number: trial.state.name for trial in study.trials}


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def test_two_workers_share_one_study_on_postgresql(synth_small, tmp_path, postgres_url):
    documented = postgres_url.replace("postgresql+psycopg2://", "postgresql://")  # the README's form, no driver
    command = tune_command(synth_small, tmp_path, documented, 4)
    workers = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    complete = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    assert len(complete) == 4 and all(trial.state.name in ("COMPLETE", "FAIL") for trial in study.trials)
    skipped = [trial for trial in study.trials if trial.state.name == "FAIL"]
    assert all("already had its 4 trials" in trial.user_attrs["skipped"] for trial in skipped)
    folder = tmp_path / "runs" / "shared-tune"
    trained = sorted(path.parent.name for path in folder.glob("trial-*/result.json"))
    assert trained == sorted(
        f"trial-{trial.number:04d}" for trial in complete
    )  # each trial trained once, by one worker
    for trial in complete:
        record = read_json(folder / f"trial-{trial.number:04d}" / "trial.json")
        assert record["state"] == "complete" and record["value"] == trial.value
    assert read_json(folder / "study.json")["trials"] == {"complete": 4, "pruned": 0, "failed": 0}  # refused: none


def test_a_worker_killed_mid_trial_leaves_it_failed_and_another_completes_the_study(
    synth_small, tmp_path, postgres_url
):
    url = create_database(postgres_url, "killed")
    command = tune_command(synth_small, tmp_path, url, 3, "--heartbeat", "1")
    first = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
    running = tmp_path / "runs" / "shared-tune" / "trial-0001" / "trial.json"
    deadline = time.monotonic() + 240
    while not (running.exists() and read_json(running).get("state") == "running"):
        assert time.monotonic() < deadline and first.poll() is None, "the first worker never reached trial 1"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert study_states(url)[1] == "RUNNING"
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    states = study_states(url)
    assert states[1] == "FAIL" and list(states.values()).count("COMPLETE") == 3
    assert sorted(states) == list(range(len(states)))
    summary = read_json(tmp_path / "runs" / "shared-tune" / "study.json")
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 1}
    record = read_json(running)
    assert record["state"] == "failed" and "stopped sending heartbeats" in record["error"]


def test_ctrl_c_in_a_trial_says_the_study_continues_with_the_same_command(synth_small, tmp_path, monkeypatch, caplog):
    from maskcls.errors import Interrupted
    from maskcls.training import loop as training

    base = base_config(synth_small, tmp_path, "train.epochs=1")
    plan = TunePlan(base=base, space=read_space(write_space(tmp_path), base), trials=1, pruner="none")

    def interrupted(self, total):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "one_epoch", interrupted)
    with pytest.raises(Interrupted) as caught:
        tune(plan, tmp_path / "runs")
    assert str(caught.value) == (
        "interrupted in trial 0 of study 'tiny'; the trial is marked failed and does not count: run the same "
        "maskcls tune command again to continue the study (1 finished trials)"
    )
    assert not [record for record in caplog.records if "Trial 0 failed" in record.getMessage()]
    folder = tmp_path / "runs" / "tiny-tune"
    record = read_json(folder / "trial-0000" / "trial.json")
    assert (record["state"], record["error"]) == ("failed", "interrupted (Ctrl-C)")
    monkeypatch.undo()
    tune(plan, tmp_path / "runs")  # the same command continues: a new trial, the failed one not counted
    summary = read_json(folder / "study.json")
    assert summary["trials"] == {"complete": 1, "pruned": 0, "failed": 1}


def test_study_bookkeeping_skips_refused_claims_and_counts_each_trials_own_epochs(tmp_path):
    base = load_config(None, ["name=tiny", "train.epochs=4", "train.folds=3"])
    space = write_space(tmp_path, "train.epochs: {type: int, low: 2, high: 6}\n")
    plan = TunePlan(base=base, space=read_space(space, base), trials=2, pruner="hyperband")
    folder = tmp_path / "tiny-tune"
    folder.mkdir()
    study = optuna.create_study(direction="maximize")
    epochs = optuna.distributions.IntDistribution(2, 6)
    for value, drawn, spent in ((0.5, 6, 6), (0.4, 3, 3)):
        study.add_trial(
            optuna.trial.create_trial(
                value=value, params={"train.epochs": drawn}, distributions={"train.epochs": epochs},
                user_attrs={"epochs": spent},
            )
        )  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"skipped": "the study already had"})
    )
    write_study_tables(study, plan, folder)
    summary = read_json(folder / "study.json")
    assert summary["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
    assert summary["epochs_spent"] == 9 and summary["epochs_without_pruning"] == 9  # 6 + 3, not 2 x base 4
    assert trial_epochs(plan, {}, largest=True) == 6
    assert open_study(plan, folder).pruner._max_resource == 6
