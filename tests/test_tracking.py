"""--track: runs, cv groups and studies on a real MLflow server (SQLite, and PostgreSQL as its
database), read back with MLflow's own client; a server that is down at the start, killed in the
middle of a run, or shared by two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from maskcls.config import flatten, recipe_dict
from maskcls.experiments.catalog import NOT_RECIPE
from maskcls.files import read_json
from maskcls.tracking.folders import parameter_value
from maskcls.tracking.target import tracking_uri
from maskcls.tracking.tracker import Tracker
from maskcls.training.train import fit
from tests.helpers import run_cli, tiny_config
from tests.mlflow_server import metric_history, mlflow_server, runs_by_name
from tests.postgres import create_database, free_port, postgres_server


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as started:
        yield started


def summary_rows(run: Path) -> list[dict]:
    return pd.read_csv(run / "summary.csv").to_dict("records")


def assert_epochs_equal_summary(uri: str, mlflow_run, folder: Path) -> None:
    rows = summary_rows(folder)
    for column in rows[0]:
        if column != "epoch":
            expected = [(int(row["epoch"]), float(row[column])) for row in rows]
            assert metric_history(uri, mlflow_run.info.run_id, column) == expected, column


def expected_parameters(config: dict) -> dict:
    """The recipe as the runs table reads it: flattened, without machine settings and identity."""
    return {key: value for key, value in flatten(recipe_dict(config)).items() if key not in NOT_RECIPE}


def artifact_names(uri: str, mlflow_run) -> set[str]:
    from tests.mlflow_server import client

    return {item.path for item in client(uri).list_artifacts(mlflow_run.info.run_id)}


@pytest.mark.parametrize("option, recipe, environment, expected", [
    ("http://a", "http://b", "http://c", "http://a"),
    (None, "http://b", "http://c", "http://b"),
    (None, None, "http://c", "http://c"),
    (None, None, None, None),
])  # fmt: skip
def test_the_option_wins_over_the_recipe_and_the_environment(monkeypatch, option, recipe, environment, expected):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if environment:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", environment)
    assert tracking_uri(option, recipe) == expected


@pytest.mark.parametrize("optional", [False, True])
def test_a_server_that_does_not_answer_stops_train_before_anything_or_warns(layout, tmp_path, capsys, optional):
    dead = f"http://127.0.0.1:{free_port()}"
    args = ["train", "cpu-demo", "--data", str(layout), "--runs-dir", str(tmp_path / "runs"), "--track", dead]
    if not optional:
        code, _, err = run_cli(*args, capsys=capsys)
        assert code == 2 and not (tmp_path / "runs").exists()
        assert err.strip().splitlines() == [
            f"maskcls: error: tracking server {dead} does not answer (Connection refused); start it, fix --track, "
            "or add --track-optional to train without it"
        ]
        return
    tracker = Tracker(dead, optional=True).start()  # the option's meaning, without training
    assert not tracker.enabled and tracker.push(tmp_path) is False
    assert "tracking is off for this command (--track-optional)" in capsys.readouterr().err


def test_nothing_of_mlflow_is_imported_without_tracking():
    code = (
        "import sys\nfrom maskcls.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_cv_group_is_a_parent_run_with_its_folds_and_everything_after_it(
    tracking_server, synth_small, tmp_path, capsys
):
    server = tracking_server
    runs = tmp_path / "runs"
    common = ["--data", str(synth_small), "--runs-dir", str(runs), "-q"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: tracked\nmodel: {name: test_resnet}\n"
        f"train: {{epochs: 2, image_size: [24, 32], batch_size: 32, cache_dir: {tmp_path / 'cache'}}}\n"
    )
    code, _, err = run_cli("cv", str(recipe), "--folds", "3", *common, "--track", server.uri, capsys=capsys)
    assert code == 0, err
    group = runs / "tracked-cv3"
    found = runs_by_name(server.uri)
    parent = found["tracked-cv3"]
    assert parent.info.status == "FINISHED" and parent.data.tags["maskcls.kind"] == "cv"
    cv = read_json(group / "cv.json")
    assert parent.data.metrics["cv_f1"] == cv["oof_f1"] and parent.data.metrics["oof_f1_age"] == cv["oof_f1_age"]
    assert parent.data.metrics["fold_f1_mean"] == cv["fold_f1_mean"]
    assert {key: parameter_value(value) for key, value in parent.data.params.items()} == expected_parameters(
        read_json(group / "group.json")["config"]
    )
    assert {"group.json", "cv.json", "oof_probabilities.csv", "config.yaml"} <= artifact_names(server.uri, parent)
    for fold in range(3):
        child = found[f"tracked-cv3/fold{fold}"]
        folder = group / f"fold{fold}"
        config = read_json(folder / "config.json")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["maskcls.fold"] == str(fold) and child.data.tags["maskcls.group"] == "tracked-cv3"
        assert child.data.tags["maskcls.commit"] == (config["git_commit"] or "")[:8]
        assert child.data.tags["maskcls.machine.train.cache_dir"] == str(tmp_path / "cache")
        assert "train.cache_dir" not in child.data.params  # a machine setting: a tag, not a parameter
        assert {key: parameter_value(value) for key, value in child.data.params.items()} == expected_parameters(config)
        assert_epochs_equal_summary(server.uri, child, folder)
        assert child.data.metrics["best_valid_f1"] == read_json(folder / "result.json")["valid_f1"]
        assert {"config.json", "summary.csv", "result.json", "confusion.png"} <= artifact_names(server.uri, child)
        assert child.info.status == "FINISHED"

    # predict, calibrate and score follow the group to its server without being told
    assert run_cli("predict", str(group), "--data", str(synth_small), "-q", capsys=capsys)[0] == 0
    assert run_cli("calibrate", str(group), capsys=capsys)[0] == 0
    code, _, err = run_cli("score", str(group / "submission.csv"), "--truth", str(synth_small), capsys=capsys)
    assert code == 0, err
    found = runs_by_name(server.uri)
    parent = found["tracked-cv3"]
    assert {"submission.csv", "test_probabilities.csv", "calibration.json", "submission.score.json"} <= artifact_names(
        server.uri, parent
    )
    score = read_json(group / "submission.score.json")
    scored = found["score tracked-cv3/submission.csv"]
    assert scored.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for half in ("public", "private"):
        for key in ("f1", "f1_mask", "f1_gender", "f1_age"):
            assert scored.data.metrics[f"{half}_{key}"] == score[half][key]
    assert parent.data.metrics["private_f1"] == score["private"]["f1"]

    # the team's table reads the same rows from the server as from the folder
    _, local, _ = run_cli("runs", "--dir", str(runs), "--format", "csv", capsys=capsys)
    code, remote, err = run_cli(
        "runs", "--from", server.uri, "--format", "csv", "--where", "name=tracked*", capsys=capsys
    )
    assert code == 0, err
    local_rows, remote_rows = pd.read_csv(pd.io.common.StringIO(local)), pd.read_csv(pd.io.common.StringIO(remote))
    shared = [column for column in local_rows.columns if column not in ("date",)]
    assert remote_rows["who"].str.contains("@").all()
    pd.testing.assert_frame_equal(remote_rows[shared], local_rows[shared], check_dtype=False)

    # the report links to the group's page on the server
    assert run_cli("report", str(group), capsys=capsys)[0] == 0
    page = f"{server.uri}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    assert f'<a id="tracking" href="{page}">' in (group / "report.html").read_text()


def test_a_server_killed_mid_run_loses_nothing(synth_small, tmp_path, capsys):
    with mlflow_server(tmp_path / "mlflow") as server:
        tracker = Tracker(server.uri).start()

        def crash_and_return(row: dict) -> None:
            if row["epoch"] == 1:
                server.stop()
            if row["epoch"] == 2:
                server.start()  # back before the run ends: what it missed goes at the end

        config = tiny_config(synth_small, tmp_path, "train.epochs=3", "name=crash")
        on_epoch = lambda row: (tracker.on_epoch(row), crash_and_return(row))  # noqa: E731
        result = fit(config, runs_dir=tmp_path / "runs", on_epoch=on_epoch)
        assert "training goes on, the run folder keeps everything" in capsys.readouterr().err
        assert tracker.finish(result.folder)
        run = runs_by_name(server.uri)["crash-fold0"]
        assert_epochs_equal_summary(server.uri, run, result.folder)
        assert run.info.status == "FINISHED"

        # down for good at the end: the run is complete on disk, and `maskcls track` sends it later
        tracker = Tracker(server.uri).start()
        config = tiny_config(synth_small, tmp_path, "train.epochs=2", "name=late")
        result = fit(config, runs_dir=tmp_path / "runs", on_epoch=lambda row: (tracker.on_epoch(row), server.stop()))
        assert not tracker.finish(result.folder)
        assert f"maskcls track {result.folder} --track {server.uri}" in capsys.readouterr().err
        assert read_json(result.folder / "result.json")["finished"]
        server.start()
        code, out, err = run_cli("track", str(result.folder), "--track", server.uri, capsys=capsys)
        assert code == 0, err
        run = runs_by_name(server.uri)["late-fold0"]
        assert_epochs_equal_summary(server.uri, run, result.folder)
        assert run.info.status == "FINISHED" and "summary.csv" in artifact_names(server.uri, run)
        assert run_cli("track", str(result.folder), "--track", server.uri, capsys=capsys)[0] == 0  # again: nothing new
        assert len(metric_history(server.uri, run.info.run_id, "valid_f1")) == 2


def test_two_processes_log_to_one_server_at_once(tracking_server, synth_small, tmp_path):
    server = tracking_server

    def command(name: str) -> list[str]:
        return [
            sys.executable, "-m", "maskcls", "train", "cpu-demo", "--data", str(synth_small), "--folds", "3", "-q",
            "--runs-dir", str(tmp_path / "runs"), "--track", server.uri, "-o", "track.experiment=pair",
            "-o", f"name={name}", "-o", "model.name=test_resnet", "-o", "model.pretrained=false",
            "-o", "model.weights=null", "-o", "train.epochs=2", "-o", "train.image_size=[24,32]",
            "-o", f"train.cache_dir={tmp_path / 'cache'}",
        ]  # fmt: skip

    environment = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    workers = [subprocess.Popen(command(name), stderr=subprocess.PIPE, text=True, env=environment) for name in "ab"]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors
    found = runs_by_name(server.uri, "pair")
    assert sorted(found) == ["a-fold0", "b-fold0"]
    for name, run in found.items():
        assert_epochs_equal_summary(server.uri, run, tmp_path / "runs" / name)


def test_a_study_is_a_parent_of_its_trials_on_a_postgresql_backed_server(synth_small, tmp_path, capsys):
    with postgres_server() as url, mlflow_server(tmp_path / "mlflow", create_database(url, "mlflow")) as server:
        space = tmp_path / "space.yaml"
        space.write_text("optim.lr: {type: float, low: 0.0001, high: 0.01, log: true}\n")
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(
            "name: st\nmodel: {name: test_resnet}\n"
            f"train: {{epochs: 1, image_size: [24, 32], batch_size: 32, folds: 3, cache_dir: {tmp_path / 'c'}}}\n"
        )
        args = ["tune", str(recipe), "--space", str(space), "--trials", "2", "--data", str(synth_small)]
        code, _, err = run_cli(*args, "--runs-dir", str(tmp_path / "runs"), "--track", server.uri, "-q", capsys=capsys)
        assert code == 0, err
        found = runs_by_name(server.uri)
        study = found["st-tune"]
        record = read_json(tmp_path / "runs/st-tune/study.json")
        assert study.data.tags["maskcls.kind"] == "study" and study.info.status == "FINISHED"
        assert study.data.metrics["best.value"] == record["best"]["value"]
        trials = sorted(
            name for name, run in found.items() if run.data.tags.get("mlflow.parentRunId") == study.info.run_id
        )
        assert trials == ["st-tune/trial-0000", "st-tune/trial-0001"]
        for trial in trials:
            folder = tmp_path / "runs" / trial
            assert_epochs_equal_summary(server.uri, found[trial], folder)
            lr = parameter_value(found[trial].data.params["optim.lr"])
            assert lr == read_json(folder / "config.json")["optim"]["lr"]
