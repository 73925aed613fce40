"""From a config to a scored submission: cv, predict (TTA, onnxruntime), ensemble, score."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.data.cache import cached_images
from maskcls.errors import Interrupted, UserError
from maskcls.experiments.cv import cross_validate
from maskcls.inference import predict
from maskcls.inference.loading import load_run
from maskcls.inference.predict import PROBABILITY_COLUMNS, predict_dataset, torch_outputs, write_predictions
from maskcls.labels import class_name
from maskcls.metrics import macro_f1
from maskcls.results import CvResult
from maskcls.rundir import names
from maskcls.training.train import fit
from tests.helpers import make_layout, run_cli, tiny_config

cv_config = tiny_config


@pytest.fixture(scope="module")
def finished_group(synth_small, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cv")
    config = cv_config(synth_small, tmp_path)
    result = cross_validate(config, runs_dir=tmp_path / "runs")
    assert result == CvResult.from_record(result.folder, json.loads((result.folder / "cv.json").read_text()))
    return result.folder, tmp_path


def test_cv_writes_out_of_fold_probabilities_for_every_training_image(finished_group, synth_small):
    group, _ = finished_group
    oof = pd.read_csv(group / "oof_probabilities.csv")
    assert len(oof) == 24 * 7 and oof["path"].is_unique and sorted(oof["fold"].unique()) == [0, 1, 2]
    assert oof.groupby("profile")["fold"].nunique().max() == 1  # a person sits in one fold
    result = json.loads((group / "cv.json").read_text())
    assert len(result["folds"]) == 3 and result["images"] == 168
    recomputed = macro_f1(oof["target"].to_numpy(), oof[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    assert result["oof_f1"] == pytest.approx(recomputed, abs=1e-6)
    for fold, score in enumerate(result["folds"]):  # each fold's F1 is its run's best valid F1
        run_result = json.loads((group / f"fold{fold}" / "result.json").read_text())
        summary = pd.read_csv(group / f"fold{fold}" / "summary.csv")
        assert run_result["best_epoch"] == int(summary["valid_f1"].idxmax()) + 1  # epochs count from 1
        assert run_result["valid_f1"] == summary["valid_f1"].max()
        assert score["valid_f1"] == run_result["valid_f1"] and score["best_epoch"] == run_result["best_epoch"]


def test_every_experiment_reuses_the_same_folds(finished_group, synth_small):
    group, tmp_path = finished_group
    single = fit(cv_config(synth_small, tmp_path, "train.fold=1", "name=other"), runs_dir=tmp_path / "runs").folder
    held_out = set(pd.read_csv(single / "valid_probabilities.csv")["profile"])
    oof = pd.read_csv(group / "oof_probabilities.csv")
    assert held_out == set(oof.loc[oof["fold"] == 1, "profile"])


def test_validation_with_flip_tta_is_what_predict_with_flip_gives(synth_small, tmp_path):
    config = cv_config(synth_small, tmp_path, "train.valid_tta=flip", "name=flipped")
    run = fit(config, runs_dir=tmp_path / "runs").folder
    valid = pd.read_csv(run / "valid_probabilities.csv")
    loaded = load_run(run, device="cpu")
    images = cached_images(synth_small, list(valid["path"]), (24, 32), tmp_path / "cache")
    stored = valid[PROBABILITY_COLUMNS].to_numpy()
    assert np.allclose(torch_outputs(loaded, images, 16, "flip"), stored, atol=1e-5)
    assert not np.allclose(torch_outputs(loaded, images, 16, "none"), stored, atol=1e-3)
    valid_f1 = json.loads((run / "result.json").read_text())["valid_f1"]
    assert valid_f1 == pytest.approx(macro_f1(valid["target"].to_numpy(), stored.argmax(axis=1)), abs=1e-6)


def test_cv_resumes_a_half_finished_group(synth_small, tmp_path):
    config = cv_config(synth_small, tmp_path, "train.epochs=2")
    trained = []

    def stop_in_fold_1(fold_done, total):
        if len(trained) == 1 and fold_done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"interrupted in fold 1 of .*; run the same maskcls cv again to continue"):
        cross_validate(
            config, runs_dir=tmp_path / "runs", progress=stop_in_fold_1, on_fold=lambda f, w: trained.append(f)
        )
    group = tmp_path / "runs" / "cvt-cv3"
    fold0_time = (group / "fold0/best.pt").stat().st_mtime_ns
    assert (group / "fold1/last.pt").exists() and not (group / "fold1/result.json").exists()
    events = []
    cross_validate(config, runs_dir=tmp_path / "runs", on_fold=lambda fold, what: events.append((fold, what)))
    assert events == [(0, "already finished"), (1, "trained"), (2, "trained")]
    assert (group / "fold0/best.pt").stat().st_mtime_ns == fold0_time
    assert len(pd.read_csv(group / "fold1/summary.csv")) == 2
    assert len(pd.read_csv(group / "oof_probabilities.csv")) == 168


def test_predict_keeps_info_order_with_quirky_extensions_and_flip_tta(finished_group, tmp_path):
    group, cache = finished_group
    names = ["b" * 40 + ".JPG", "a" * 40 + ".jpeg", "c" * 40 + ".png", "d" * 40 + ".jpg"]
    data = make_layout(tmp_path / "quirky", ["000001_female_Asian_45"], eval_names=names)
    rng = np.random.default_rng(0)
    for name in names:  # textured images, so that the mirror image differs
        image = Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))
        image.save(data / "eval/images" / name, format="PNG" if name.endswith("png") else "JPEG")
    plain = predict_dataset([group], data, cache_dir=cache / "cache")
    flipped = predict_dataset([group], data, tta="flip", cache_dir=cache / "cache")
    assert plain.table["ImageID"].tolist() == names and plain.models == 3
    assert np.allclose(plain.table[PROBABILITY_COLUMNS].sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(plain.table[PROBABILITY_COLUMNS], flipped.table[PROBABILITY_COLUMNS])
    probabilities, submission = write_predictions(tmp_path / "out", plain)
    assert pd.read_csv(submission)["ImageID"].tolist() == names
    mean = np.mean([table[PROBABILITY_COLUMNS].to_numpy() for table in plain.per_run.values()], axis=0)
    assert np.allclose(pd.read_csv(probabilities)[PROBABILITY_COLUMNS], mean, atol=1e-6)


def textured_layout(root, names, mirrored=False):
    """PNG eval images with distinct random textures (the mirror image differs from the image)."""
    data = make_layout(root, ["000001_female_Asian_45"], eval_names=names)
    for k, name in enumerate(names):
        image = Image.fromarray(np.random.default_rng(k).integers(0, 255, (64, 48, 3), dtype=np.uint8))
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else image
        image.save(data / "eval/images" / name, format="PNG")
    return data


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_each_row_is_its_own_image_and_flip_tta_is_the_mean_with_the_mirror(finished_group, tmp_path, backend):
    group, cache = finished_group
    run = group / "fold0"
    names = [f"{letter * 40}.png" for letter in "dbca"]
    together = predict_dataset([run], textured_layout(tmp_path / "all", names), backend=backend, cache_dir=cache / "c")
    for k, name in enumerate(names):  # each image alone, in a dataset of its own
        alone_data = textured_layout(tmp_path / f"alone{k}", [name])
        (alone_data / "eval/images" / name).write_bytes((tmp_path / "all/eval/images" / name).read_bytes())
        alone = predict_dataset([run], alone_data, backend=backend, cache_dir=cache / "c")
        expected = alone.table[PROBABILITY_COLUMNS].to_numpy()[0]
        assert np.allclose(together.table[PROBABILITY_COLUMNS].to_numpy()[k], expected, atol=2e-6), name
    plain = together.table[PROBABILITY_COLUMNS].to_numpy()
    mirror_data = textured_layout(tmp_path / "mirrored", names, mirrored=True)
    mirrored = predict_dataset([run], mirror_data, backend=backend, cache_dir=cache / "c").table
    flipped = predict_dataset([run], tmp_path / "all", tta="flip", backend=backend, cache_dir=cache / "c").table
    expected = (plain + mirrored[PROBABILITY_COLUMNS].to_numpy()) / 2
    assert np.allclose(flipped[PROBABILITY_COLUMNS].to_numpy(), expected, atol=2e-6)
    assert np.abs(plain - expected).max() > 1e-4  # the mirror matters, so the checks have teeth


def test_onnx_export_matches_pytorch(finished_group, synth_small):
    group, cache = finished_group
    torch_result = predict_dataset([group / "fold0"], synth_small, cache_dir=cache / "cache")
    onnx_result = predict_dataset([group / "fold0"], synth_small, backend="onnxruntime", cache_dir=cache / "cache")
    assert (group / "fold0/model.onnx").exists()
    difference = np.abs(
        torch_result.table[PROBABILITY_COLUMNS].to_numpy() - onnx_result.table[PROBABILITY_COLUMNS].to_numpy()
    )
    assert difference.max() < 1e-4


def test_an_int8_copy_is_quantized_from_the_run_and_predicts_close_to_it(finished_group, synth_small, tmp_path, capsys):
    import onnx

    group, cache = finished_group
    run = group / "fold2"
    code, out, err = run_cli("export", str(run), "--int8", "--photos", "32", capsys=capsys)
    assert code == 0, err
    assert f"{run / 'model-int8.onnx'}: " in out and "(int8, 32 calibration photos at most)" in out
    graph = onnx.load(run / "model-int8.onnx").graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    weights = [tensor for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 5  # every convolution's weights stored as int8
    plain = predict_dataset([run], synth_small, backend="onnxruntime", cache_dir=cache / "cache")
    quantized = predict_dataset([run], synth_small, backend="int8", cache_dir=cache / "cache")
    assert quantized.backends == ["int8"]
    a, b = (result.table[PROBABILITY_COLUMNS].to_numpy() for result in (plain, quantized))
    np.testing.assert_allclose(b.sum(axis=1), 1, atol=1e-5)
    assert np.abs(a - b).mean() < 0.02 and (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.9
    code, _, err = run_cli("export", str(run), "--int8", "--out", str(tmp_path / "x.onnx"), capsys=capsys)
    assert (
        code == 2 and "--int8 quantizes RUN/model.onnx as predict uses it" in err and not (tmp_path / "x.onnx").exists()
    )


def test_auto_backend_is_measured_once_per_run_and_kept(finished_group, synth_small, monkeypatch):
    group, cache = finished_group
    run = group / "fold1"
    timed = []

    def measured(run_folder, device="auto"):
        timed.append(run_folder)
        return {"torch": 10.0, "onnxruntime": 30.0}

    monkeypatch.setattr(predict, "measure_backends", measured)
    assert predict.preferred_backend(run) == "onnxruntime"
    record = json.loads((run / names.BACKEND).read_text())
    assert record["backend"] == "onnxruntime" and record["images_per_second"] == {"torch": 10.0, "onnxruntime": 30.0}
    assert predict.preferred_backend(run) == "onnxruntime" and timed == [run]  # read back, not timed again
    record["backend"] = "torch"  # as if torch had won: the kept choice is what predict uses
    (run / names.BACKEND).write_text(json.dumps(record))
    auto = predict_dataset([run], synth_small, backend="auto", cache_dir=cache / "cache")
    plain = predict_dataset([run], synth_small, backend="torch", cache_dir=cache / "cache")
    pd.testing.assert_frame_equal(auto.table, plain.table)
    assert auto.backends == plain.backends == ["torch"]
    os.utime(run / "best.pt")  # a newer checkpoint is timed again
    assert predict.preferred_backend(run) == "onnxruntime" and timed == [run, run]


def test_measured_backend_speeds_are_real_timings(finished_group):
    group, _ = finished_group
    speeds = predict.measure_backends(group / "fold2", batch_size=8, repeats=1)
    assert set(speeds) == {"torch", "onnxruntime"} and all(speed > 0 for speed in speeds.values())
    assert (group / "fold2/model.onnx").exists()


def test_cv_warns_that_corrections_change_the_out_of_fold_targets(synth_small, tmp_path, caplog):
    profile = pd.read_csv(synth_small / "train/train.csv")["path"].iloc[0]
    gender = "male" if "_female_" in profile else "female"
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(f"verified: false\nfixes:\n  - {{profile: {profile}, gender: {gender}}}\n")
    config = cv_config(synth_small, tmp_path, f"data.corrections={fixes}", "name=fixed")
    with caplog.at_level("WARNING", logger="maskcls"):
        group = cross_validate(config, runs_dir=tmp_path / "runs").folder
    oof = json.loads((group / "cv.json").read_text())["oof_f1"]
    expected = (
        f"data.corrections changes the labels of 7 training images, so the out-of-fold targets too: CV F1 {oof:.4f} "
        "is comparable only with runs that use the same corrections"
    )
    assert any(message.startswith(expected) for message in caplog.messages), caplog.messages


def test_cv_prints_an_epoch_line_per_fold_and_counts_epochs_from_one(synth_small, tmp_path, capsys):
    from tests.helpers import run_cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: lines\n")
    code, _, err = run_cli(
        "cv", str(recipe), "--data", str(synth_small), "--runs-dir", str(tmp_path / "runs"), "-o",
        "model.name=test_resnet", "-o", "train.epochs=2", "-o", "train.image_size=[24,32]", "-o", "train.folds=2",
        "-o", f"train.cache_dir={tmp_path / 'cache'}", capsys=capsys,
    )  # fmt: skip
    assert code == 0
    lines = [line for line in err.splitlines() if ": epoch " in line]
    assert [line.split("  ")[0] for line in lines] == ["fold0: epoch 1/2", "fold0: epoch 2/2", "fold1: epoch 1/2",
                                                      "fold1: epoch 2/2"]  # fmt: skip
    summary = pd.read_csv(tmp_path / "runs/lines-cv2/fold0/summary.csv")
    result = json.loads((tmp_path / "runs/lines-cv2/fold0/result.json").read_text())
    assert summary["epoch"].tolist() == [1, 2] and result["best_epoch"] == int(
        summary.loc[summary["valid_f1"].idxmax(), "epoch"]
    )


def test_a_busy_group_is_refused_before_the_slow_checks(synth_small, tmp_path, monkeypatch):
    from maskcls.locks import exclusive_use
    from maskcls.training import train as training

    def slow_checks(config):
        raise AssertionError("the busy group was not refused first")

    monkeypatch.setattr(training, "check_parts", slow_checks)
    group = tmp_path / "runs/busy-cv3"
    with exclusive_use(group, "cv"), pytest.raises(UserError, match=f"{group} is in use by maskcls cv"):
        cross_validate(cv_config(synth_small, tmp_path, "name=busy"), runs_dir=tmp_path / "runs")


def test_a_cv_group_where_a_run_is_needed_names_its_folds(finished_group, capsys):
    from tests.helpers import run_cli

    group, _ = finished_group
    folds = ", ".join(str(group / f"fold{k}") for k in range(3))
    for args in (["export", str(group)], ["train", "--resume", str(group)]):
        code, _, err = run_cli(*args, capsys=capsys)
        assert (
            code == 2
            and err == f"maskcls: error: {group} is a cv group, not a run: name one of its fold runs ({folds})\n"
        )


def test_a_submission_written_elsewhere_keeps_its_cv_f1_and_truth_folders_are_found(
    finished_group, synth_small, tmp_path
):
    from maskcls.evaluation.score import score_submission

    group, cache = finished_group
    prediction = predict_dataset([group], synth_small, cache_dir=cache / "cache")
    _, submission = write_predictions(tmp_path / "elsewhere", prediction)
    cv_f1 = json.loads((group / "cv.json").read_text())["oof_f1"]
    for truth in (synth_small, synth_small / "truth", synth_small / "truth" / "eval.csv"):
        assert score_submission(submission, truth)["validation_f1"] == cv_f1


def test_a_calibrated_submission_shows_its_calibrations_out_of_fold_f1(finished_group, synth_small, tmp_path, capsys):
    from maskcls.evaluation.score import score_submission
    from tests.helpers import run_cli

    group, cache = finished_group
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"biases": [0.5] + [0.0] * 17, "guard_passed": True, "heldout_f1_after": 0.4321}))
    prediction = predict_dataset([group], synth_small, cache_dir=cache / "cache", calibration=calibration)
    _, submission = write_predictions(tmp_path / "calibrated", prediction)
    result = score_submission(submission, synth_small)
    assert result["validation_f1"] == 0.4321 and result["calibrated_by"] == str(calibration.resolve())
    assert json.loads((tmp_path / "calibrated/submission.made.json").read_text()) == {
        "sources": [str(group.resolve())],
        "calibration": str(calibration.resolve()),
    }
    ensembled = tmp_path / "ensembled.csv"
    args = ["ensemble", str(tmp_path / "calibrated/test_probabilities.csv"), "--out", str(ensembled)]
    assert run_cli(*args, "--calibration", str(calibration), capsys=capsys)[0] == 0
    assert score_submission(ensembled, synth_small)["validation_f1"] == 0.4321
    code, out, _ = run_cli("score", str(ensembled), "--truth", str(synth_small), capsys=capsys)
    assert code == 0 and "valid/CV F1 of a calibrated submission: its calibration's out-of-fold F1" in out
    raw = predict_dataset([group], synth_small, cache_dir=cache / "cache", calibration=None)
    _, submission = write_predictions(tmp_path / "raw", raw)
    cv_f1 = json.loads((group / "cv.json").read_text())["oof_f1"]
    assert score_submission(submission, synth_small)["validation_f1"] == cv_f1
    elsewhere = tmp_path / "elsewhere.json"  # fitted on another model's out-of-fold probabilities
    elsewhere.write_text(json.dumps({**json.loads(calibration.read_text()), "source": "other-cv3/oof.csv"}))
    borrowed = predict_dataset([group], synth_small, cache_dir=cache / "cache", calibration=elsewhere)
    _, submission = write_predictions(tmp_path / "borrowed", borrowed)
    result = score_submission(submission, synth_small)
    assert result["validation_f1"] == cv_f1 and result["calibrated_by"] == str(elsewhere.resolve())


def test_predict_given_the_eval_folder_names_the_dataset_before_any_warning(finished_group, synth_small, caplog):
    group, cache = finished_group
    with pytest.raises(UserError, match=r"eval: this is the eval/ folder of a dataset; give the dataset folder"):
        predict_dataset([group], synth_small / "eval", cache_dir=cache / "cache")
    assert caplog.text == ""


def test_the_api_predicts_a_group_as_a_table_with_class_names(finished_group, synth_small):
    import maskcls

    group, tmp_path = finished_group
    table = maskcls.predict(group, data=synth_small, cache_dir=tmp_path / "cache")
    expected = predict_dataset([group], synth_small, cache_dir=tmp_path / "cache").table
    assert list(table.columns[:5]) == ["ImageID", "class", "mask", "gender", "age"]
    pd.testing.assert_frame_equal(table[["ImageID", *PROBABILITY_COLUMNS]], expected[["ImageID", *PROBABILITY_COLUMNS]])
    classes = expected[PROBABILITY_COLUMNS].to_numpy().argmax(1)
    assert table["class"].tolist() == classes.tolist()
    names = [class_name(k).split(" / ") for k in classes]
    assert [list(row) for row in table[["mask", "gender", "age"]].itertuples(index=False)] == names
    with pytest.raises(UserError, match="predict: give data .* or images"):
        maskcls.predict(group)


def test_the_calibration_inside_an_exported_graph_is_the_one_predict_applies(finished_group, synth_small, tmp_path):
    from maskcls.data.cache import cached_images
    from maskcls.data.layout import read_dataset
    from maskcls.inference.export import export_onnx, onnx_session
    from maskcls.inference.predict import onnx_outputs

    group, cache = finished_group
    biases = np.random.default_rng(1).uniform(-2, 2, 18).round(1).tolist()
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"biases": biases, "age": None, "source": "test"}))
    wanted = predict_dataset([group / "fold0"], synth_small, cache_dir=cache / "cache", calibration=calibration)
    path = export_onnx(group / "fold0", tmp_path / "calibrated.onnx", calibration=calibration)
    paths = list(read_dataset(synth_small).eval["path"])
    images = cached_images(synth_small, paths, (24, 32), cache / "cache")
    got = onnx_outputs(onnx_session(path), np.asarray(images), 16, "none")
    assert got == pytest.approx(wanted.table[PROBABILITY_COLUMNS].to_numpy(float), abs=1e-5)
    assert not (group / "fold0/model-calibrated.onnx").exists()  # model.onnx, predict's own, is never replaced
    with pytest.raises(UserError, match="no calibration.json here or in its cv group"):
        export_onnx(group / "fold0", calibration="auto")


def test_the_graphs_calibration_equals_numpys_with_age_borders_and_biases():
    import torch

    from maskcls.evaluation.calibrate import AgeBorders, Calibration, apply_calibration
    from maskcls.inference.export import CalibratedOutputs

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(18), size=64)
    estimates = rng.uniform(15, 80, size=64)
    age = AgeBorders(borders=[31.5, 58.0], scale=3.2, oof_f1_before=0, heldout_f1_after=0, fold_borders=[],
                     guard_passed=True)  # fmt: skip
    calibration = Calibration(biases=rng.uniform(-1, 1, 18).tolist(), source="test", age=age)
    wanted = apply_calibration(probabilities, estimates, calibration)
    outputs = torch.tensor(np.column_stack([probabilities, estimates]), dtype=torch.float64)
    got = CalibratedOutputs(calibration)(outputs).numpy()
    assert got[:, :18] == pytest.approx(wanted, abs=1e-6) and got[:, 18] == pytest.approx(estimates)
