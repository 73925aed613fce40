"""Age heads over exact ages (ordinal, regression, distribution), their estimate through training,
prediction and ONNX, and the age borders calibrate learns."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from maskcls.ages import laplace_group_probabilities
from maskcls.cli.render import cv_line, fit_line
from maskcls.config import load_config
from maskcls.errors import ConfigError, UserError
from maskcls.evaluation.age_borders import f1_at_fitted_borders, with_age_borders
from maskcls.evaluation.calibrate import (
    Calibration,
    calibrate,
    calibrate_table,
    cross_validated_f1,
    held_out_classes,
    read_calibration,
    uncut_age_estimate,
)
from maskcls.evaluation.ensemble import ensemble
from maskcls.experiments.catalog import find_entries, read_run
from maskcls.experiments.cv import cross_validate
from maskcls.experiments.report import write_report
from maskcls.inference.export import export_onnx, onnx_session
from maskcls.inference.inference import Predictor
from maskcls.inference.loading import load_run
from maskcls.inference.predict import onnx_outputs, predict_dataset, torch_outputs
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS, age_groups, encode_classes
from maskcls.metrics import macro_f1
from maskcls.training.age import BINS, AgeHead
from maskcls.training.losses import HeadLoss
from maskcls.training.models import create_model
from maskcls.training.train import fit
from tests.helpers import tiny_config

K = BINS - 1  # ordinal tasks


def test_ordinal_head_reads_cumulative_probabilities_that_never_cross():
    head = AgeHead("ordinal")
    with torch.no_grad():  # thresholds t_k = k
        head.first_threshold.zero_()
        head.threshold_steps.fill_(math.log(math.expm1(1.0)))
    assert torch.allclose(head.thresholds(), torch.arange(K, dtype=torch.float32), atol=1e-5)
    zero = torch.zeros(1, 1)  # P(age > bin k) = sigmoid(-k)
    above = torch.sigmoid(-torch.arange(K, dtype=torch.float64))
    expected = torch.cat([1 - above[:1], above[:-1] - above[1:], above[-1:]])
    bins = head.bin_probabilities(zero)[0].double()
    assert torch.allclose(bins, expected, atol=1e-6)
    assert head.estimate(zero).item() == pytest.approx(15 + above.sum().item(), abs=1e-4)
    groups = head.group_probabilities(zero)[0].double()  # bins 0..14 are <30, 45.. are 60+
    assert torch.allclose(groups, torch.tensor([1 - above[14], above[14] - above[44], above[44]]).double(), atol=1e-6)
    with torch.no_grad():
        head.first_threshold.fill_(3.0)
        head.threshold_steps.copy_(torch.randn(K - 1, generator=torch.Generator().manual_seed(0)) * 3)
    outputs = torch.randn(50, 1, generator=torch.Generator().manual_seed(1)) * 5
    probabilities = head.bin_probabilities(outputs)
    assert torch.allclose(probabilities.sum(1), torch.ones(50)) and (probabilities >= 0).all()
    above = 1 - probabilities.cumsum(1)
    assert (above[:, 1:] <= above[:, :-1] + 1e-6).all()  # rank-consistent


@pytest.mark.parametrize("kind", ["ordinal", "distribution"])
def test_a_new_age_head_starts_at_the_ages_of_the_training_people(kind):
    head = AgeHead(kind)
    uniform = head.bin_probabilities(head.initialise_from()[None, :])[0]
    assert torch.allclose(uniform, torch.full((BINS,), 1 / BINS), atol=1e-6)
    assert head.estimate(head.initialise_from()[None, :]).item() == pytest.approx(47.5, abs=1e-4)
    ages = torch.tensor([20, 20, 20, 25, 58, 61, 61, 90])  # 90 is clipped into the last bin (80)
    counts = torch.bincount(ages.clamp(max=80) - 15, minlength=BINS).float() + 0.5
    bins = head.bin_probabilities(head.initialise_from(ages)[None, :])[0]
    assert torch.allclose(bins, counts / counts.sum(), atol=1e-5)
    model = create_model("test_resnet", "multi", age_head=kind)
    model.initialise_age_head(ages)
    assert torch.equal(model.classifier[1].bias[5:], head.initialise_from(ages))
    for name, value in head.state_dict().items():  # the ordinal head's thresholds
        assert torch.equal(model.age.state_dict()[name], value)
    regression = create_model("test_resnet", "multi", age_head="regression")
    regression.initialise_age_head(ages)
    assert regression.classifier[1].bias[5].item() == pytest.approx((ages.float().mean().item() - 40) / 15)
    classes = create_model("test_resnet", "multi")
    before = classes.classifier[1].bias.clone()
    classes.initialise_age_head(ages)
    assert torch.equal(classes.classifier[1].bias, before)


def test_distribution_and_regression_heads_read_groups_and_estimates():
    distribution = AgeHead("distribution")
    uniform = torch.zeros(1, BINS)
    assert distribution.estimate(uniform).item() == pytest.approx(47.5)
    assert torch.allclose(distribution.group_probabilities(uniform)[0], torch.tensor([15, 30, 21]) / 66)
    moved = AgeHead("distribution", borders=(30, 58))
    assert torch.allclose(moved.group_probabilities(uniform)[0], torch.tensor([15, 28, 23]) / 66)
    regression = AgeHead("regression")  # Laplace scale 7.5 years at the start
    centre = torch.zeros(1, 1)
    assert regression.estimate(centre).item() == 40.0
    young, old = 0.5 * math.exp(-10.5 / 7.5), 0.5 * math.exp(-19.5 / 7.5)  # borders at 29.5 and 59.5
    assert torch.allclose(regression.group_probabilities(centre)[0], torch.tensor([young, 1 - young - old, old]))


def test_age_losses_have_their_exact_values():
    ages = torch.tensor([55])
    assert AgeHead("regression").loss(torch.zeros(1, 1), ages).item() == pytest.approx(1 / 0.5 + math.log(0.5))
    assert AgeHead("distribution").loss(torch.zeros(1, BINS), ages).item() == pytest.approx(math.log(BINS))
    sharp = torch.full((1, BINS), -30.0)
    sharp[0, 55 - 15] = 30.0
    gaussian = torch.exp(-0.5 * ((torch.arange(15, 81) - 55) / 2.0) ** 2)
    gaussian = gaussian / gaussian.sum()
    expected = -(gaussian * sharp.log_softmax(1)).sum()
    assert AgeHead("distribution").loss(sharp, ages).item() == pytest.approx(expected.item(), rel=1e-5)
    ordinal = AgeHead("ordinal")  # uniform start: t_k = -log((65 - k) / (k + 1))
    thresholds = -torch.log(torch.arange(K, 0, -1) / torch.arange(1, K + 1)).double()
    assert torch.allclose(ordinal.thresholds().double(), thresholds, atol=1e-5)
    output = torch.tensor([[0.7]])
    # age 17 (bin 2): "older than bin 0" and "older than bin 1" are true, every other task false
    expected = sum(F.softplus(-(0.7 - thresholds[k])) for k in range(2)) + sum(
        F.softplus(0.7 - thresholds[k]) for k in range(2, K)
    )
    assert ordinal.loss(output, torch.tensor([17])).item() == pytest.approx((expected / K).item(), rel=1e-5)


@pytest.mark.parametrize(("age", "clipped"), [(115, 80), (130, 80), (3, 15)])
def test_distribution_loss_clips_ages_outside_the_bins(age, clipped):
    """A Gaussian around 115 underflows on every bin (0 / 0 = NaN); the age counts as the last bin's."""
    logits = torch.randn(1, BINS, generator=torch.Generator().manual_seed(0))
    head = AgeHead("distribution")
    assert head.loss(logits, torch.tensor([age])).item() == pytest.approx(
        head.loss(logits, torch.tensor([clipped])).item(), rel=1e-6
    )


def test_head_loss_adds_the_age_loss_to_mask_and_gender():
    model = create_model("test_resnet", "multi", age_head="regression")
    loss = HeadLoss([("cross_entropy", 1.0, {})], "multi", {"age": 0.5}, model.age)
    logits = torch.randn(3, 3 + 2 + 1, generator=torch.Generator().manual_seed(2))
    classes, ages = torch.tensor([0, 7, 17]), torch.tensor([20, 45, 70])
    expected = (
        F.cross_entropy(logits[:, :3], classes // 6)
        + F.cross_entropy(logits[:, 3:5], classes // 3 % 2)
        + 0.5 * model.age.loss(logits[:, 5:], ages)
    )
    assert loss(logits, torch.stack([classes, ages], 1)).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="exact ages"):
        loss(logits, classes)


def test_age_heads_need_three_heads():
    with pytest.raises(ConfigError, match="age_head=ordinal needs head=multi"):
        load_config(None, ["model.age_head=ordinal"])
    with pytest.raises(UserError, match="needs three heads"):
        create_model("test_resnet", "single", age_head="ordinal")


@pytest.mark.parametrize("kind", ["ordinal", "regression", "distribution"])
def test_outputs_carry_the_estimate_after_the_probabilities(kind):
    torch.manual_seed(0)
    model = create_model("test_resnet", "multi", age_head=kind).eval()
    logits = model(torch.randn(4, 3, 32, 24))
    outputs = model.outputs(logits)
    assert outputs.shape == (4, 19)
    assert torch.equal(outputs[:, :18], model.class_probabilities(logits))
    assert torch.equal(outputs[:, 18], model.age.estimate(logits[:, 5:]))
    assert torch.allclose(outputs[:, :18].sum(1), torch.ones(4))


def config_for(data, tmp_path, *overrides):
    multi = (
        "model.head=multi",
        "train.epochs=2",
        "optim.lr=3e-3",
        "train.mixing=cutmix",
        "train.mixing_probability=0.5",
    )
    return tiny_config(data, tmp_path, *multi, *overrides)


def test_a_regression_run_reports_its_age_error_and_predicts_the_same_on_both_backends(synth_small, tmp_path, caplog):
    run = fit(
        config_for(synth_small, tmp_path, "model.age_head=regression", "name=r"), runs_dir=tmp_path / "runs"
    ).folder
    valid = pd.read_csv(run / "valid_probabilities.csv")
    assert list(valid.columns[:4]) == ["path", "profile", "target", "age"] and valid.columns[-1] == AGE_ESTIMATE_COLUMN
    ages = valid["profile"].str.split("_").str[-1].astype(int)
    assert (valid["age"] == ages).all()
    summary = pd.read_csv(run / "summary.csv")
    best = summary.loc[summary["valid_f1_borders"].idxmax()]  # the epoch kept (by the F1 at fitted borders)
    assert best["valid_age_mae"] == round(float((valid[AGE_ESTIMATE_COLUMN] - valid["age"]).abs().mean()), 6)
    loaded = load_run(run, device="cpu")
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 24, 3), dtype=np.uint8)
    from_torch = torch_outputs(loaded, images, 5, "flip")
    from_onnx = onnx_outputs(onnx_session(export_onnx(run)), images, 5, "flip")
    assert from_torch.shape == from_onnx.shape == (5, 19)
    assert np.allclose(from_torch, from_onnx, atol=1e-4)
    with caplog.at_level("WARNING", logger="maskcls"):
        table = predict_dataset([run], synth_small, backend="torch", device="cpu").table
    assert list(table.columns) == ["ImageID", *PROBABILITY_COLUMNS, AGE_ESTIMATE_COLUMN]
    assert caplog.messages.count(uncut_age_estimate(run)) == 1  # no learned borders: said once
    caplog.clear()
    with caplog.at_level("WARNING", logger="maskcls"):
        predict_dataset([run], synth_small, backend="torch", device="cpu", calibration=None)
        Predictor(run, calibration=None)
    assert uncut_age_estimate(run) not in caplog.messages
    with caplog.at_level("WARNING", logger="maskcls"):
        Predictor(run)  # what serve runs
    assert caplog.messages.count(uncut_age_estimate(run)) == 1


def test_a_model_that_estimates_the_age_keeps_the_epoch_its_fitted_borders_score_best(synth_small, tmp_path):
    """best.pt is chosen by the F1 at the borders fitted on the validation rows, not by the model's
    own cut at 30 / 60 (calibrate learns where the estimate is cut)."""
    config = config_for(synth_small, tmp_path, "model.age_head=regression", "name=chosen", "train.epochs=3")
    run = fit(config, runs_dir=tmp_path / "runs")
    summary = pd.read_csv(run.folder / "summary.csv")
    by_borders, by_own_cut = int(summary["valid_f1_borders"].idxmax()), int(summary["valid_f1"].idxmax())
    assert by_borders != by_own_cut  # else this run cannot tell the two choices apart
    result = json.loads((run.folder / "result.json").read_text())
    assert result["best_epoch"] == run.best_epoch == by_borders + 1
    valid = pd.read_csv(run.folder / "valid_probabilities.csv")  # the kept epoch's validation outputs
    f1 = f1_at_fitted_borders(
        valid[PROBABILITY_COLUMNS].to_numpy(), valid[AGE_ESTIMATE_COLUMN].to_numpy(), valid["age"].to_numpy(),
        valid["target"].to_numpy(),
    )  # fmt: skip
    assert result["valid_f1_borders"] == run.valid_f1_borders == summary["valid_f1_borders"][by_borders] == round(f1, 6)
    assert f"{run.valid_f1_borders:.4f} at fitted age borders) at epoch {by_borders + 1} of 3" in fit_line(run)


def test_the_f1_at_fitted_borders_cuts_the_estimate_where_it_fits(tmp_path):
    """A model 3 years too old everywhere: cut at 30 / 60 it misplaces ages 27-29 and 57-59; at the
    fitted borders (33 / 63) every row is right."""
    path, target = biased_estimates(tmp_path)
    table = pd.read_csv(path)
    probabilities, estimates = table[PROBABILITY_COLUMNS].to_numpy(), table[AGE_ESTIMATE_COLUMN].to_numpy()
    assert macro_f1(target, probabilities.argmax(axis=1)) < 0.95
    assert f1_at_fitted_borders(probabilities, estimates, table["age"].to_numpy(), target) == 1.0


def biased_estimates(tmp_path, bias=3.0):
    """Out-of-fold rows whose model knows mask and gender and estimates every age ``bias`` years too
    old, cutting its own groups at the real borders (so it calls 27-29 year olds 30-59)."""
    rng = np.random.default_rng(0)
    ages = rng.integers(18, 76, 600)
    mask, gender = rng.integers(0, 3, 600), rng.integers(0, 2, 600)
    target = encode_classes(mask, gender, age_groups(ages))
    own = encode_classes(mask, gender, age_groups(ages + bias))
    table = pd.DataFrame(np.eye(18)[own] * 0.9 + 0.1 / 18, columns=PROBABILITY_COLUMNS)
    table.insert(0, "age", ages)
    table.insert(0, "fold", np.arange(600) % 3)
    table.insert(0, "target", target)
    table.insert(0, "path", [f"{index:06d}/mask1.jpg" for index in range(600)])
    table[AGE_ESTIMATE_COLUMN] = ages + bias
    path = tmp_path / "oof.csv"
    table.to_csv(path, index=False)
    return path, target


def test_calibrate_learns_the_borders_a_biased_estimate_needs(tmp_path, capsys):
    path, target = biased_estimates(tmp_path)
    result = calibrate(path)
    age = result.age
    assert age.borders == [32.5, 63.0]  # estimate = age + 3: the first grid borders whose decisions split 29|30, 59|60
    assert age.fold_borders == [[32.5, 63.0]] * 3 and age.scale == 3.0
    assert age.heldout_f1_after == 1.0 and age.guard_passed and age.oof_f1_before < 1.0
    written = result.write(tmp_path / "calibration.json")
    assert read_calibration(written).age_borders.borders == [32.5, 63.0]
    calibrated = ensemble([path], oof=True, calibration=written)
    assert (calibrated.classes == target).all()
    from tests.helpers import run_cli

    code, out, _ = run_cli("calibrate", str(path), capsys=capsys)
    assert code == 0 and "age borders 32.5 and 63" in out and "32.5/63; 32.5/63; 32.5/63" in out


def test_borders_are_not_used_when_the_model_s_own_groups_are_as_good(tmp_path):
    path, _ = biased_estimates(tmp_path, bias=0.0)
    age = calibrate(path).age
    assert age.oof_f1_before == age.heldout_f1_after == 1.0 and not age.guard_passed and age.scale == 0.1
    written = calibrate(path).write(tmp_path / "calibration.json")
    assert read_calibration(written).age_borders is None


def test_the_ensemble_averages_age_estimates_with_the_weights(tmp_path):
    path, _ = biased_estimates(tmp_path)
    other = pd.read_csv(path)
    other[AGE_ESTIMATE_COLUMN] = other[AGE_ESTIMATE_COLUMN] + 8
    other.to_csv(tmp_path / "other.csv", index=False)
    combined = ensemble([path, tmp_path / "other.csv"], weights=[1, 3], oof=True).table
    assert np.allclose(combined[AGE_ESTIMATE_COLUMN], pd.read_csv(path)[AGE_ESTIMATE_COLUMN] + 6)
    assert list(combined.columns[:4]) == ["path", "target", "fold", "age"]
    plain = pd.read_csv(path).drop(columns=[AGE_ESTIMATE_COLUMN])
    plain.to_csv(tmp_path / "plain.csv", index=False)
    assert AGE_ESTIMATE_COLUMN not in ensemble([path, tmp_path / "plain.csv"], oof=True).table


@pytest.mark.parametrize("borders", [(30, 60), (32.5, 58.0)])
def test_torch_and_numpy_cut_an_estimate_at_the_same_borders(borders):
    """One meaning of a border: the age head (torch) and calibrate (NumPy) give the same probabilities."""
    from maskcls.training.age import laplace_group_probabilities as torch_groups

    estimates = np.array([18.0, 29.4, 29.5, 31.0, 45.0, 59.49, 59.5, 70.0])
    expected = laplace_group_probabilities(estimates, borders, 2.5)
    given = torch_groups(torch.tensor(estimates, dtype=torch.float64), borders, torch.tensor(2.5, dtype=torch.float64))
    assert np.allclose(given.numpy(), expected, atol=1e-12)
    assert expected[2, 0] == (0.5 if borders == (30, 60) else expected[2, 0])  # 29.5 years rounds to 30: on the cut


def test_learned_borders_rebuild_the_age_part_and_need_an_estimate():
    probabilities = np.zeros((1, 18))
    probabilities[0, 9:12] = [0.2, 0.5, 0.3]  # incorrect / female, some age
    rebuilt = with_age_borders(probabilities, np.array([40.0]), (30, 60), 5.0)
    young, old = 0.5 * math.exp(-2.1), 0.5 * math.exp(-3.9)  # cut at 29.5 and 59.5 (whole years)
    expected = np.zeros(18)
    expected[9:12] = [young, 1 - young - old, old]
    assert np.allclose(rebuilt[0], expected)
    assert np.allclose(laplace_group_probabilities(np.array([25.0]), (30, 60), 5.0)[0, 2], 0.5 * math.exp(-6.9))
    calibration = Calibration(biases=[0.0] * 18, source="c.json")
    calibration.age = read_age({"borders": [31, 57], "scale": 4.0})
    table = pd.DataFrame(probabilities, columns=PROBABILITY_COLUMNS)
    with pytest.raises(UserError, match=r"c.json: it cuts the age estimate .* no age_estimate column"):
        calibrate_table(table, calibration)


def read_age(values):
    from maskcls.evaluation.calibrate import AgeBorders

    return AgeBorders(
        **values, oof_f1_before=0.5, heldout_f1_after=0.6, fold_borders=[values["borders"]], guard_passed=True
    )


def test_a_distribution_cv_writes_the_age_error_and_calibrates_borders(synth_small, tmp_path):
    config = config_for(synth_small, tmp_path, "model.age_head=distribution", "name=d", "train.epochs=1")
    validated = cross_validate(config, runs_dir=tmp_path / "runs")
    group = validated.folder
    oof = pd.read_csv(group / "oof_probabilities.csv")
    result = json.loads((group / "cv.json").read_text())
    assert result["oof_age_mae"] == round(float((oof[AGE_ESTIMATE_COLUMN] - oof["age"]).abs().mean()), 4)
    calibration = calibrate(group)
    assert calibration.age is not None and calibration.age.scale == round(result["oof_age_mae"], 4)
    # the CV at held-out borders: each fold cut where the other folds put the borders, as calibrate's figure
    assert validated.oof_f1_borders == result["oof_f1_borders"] == calibration.age.heldout_f1_after
    assert validated.selected_f1 == result["oof_f1_borders"]
    assert f"images; {result['oof_f1_borders']:.4f} at held-out age borders)" in cv_line(validated)
    page = write_report(group).read_text()
    mae = (oof[AGE_ESTIMATE_COLUMN] - oof["age"]).abs().mean()
    assert f"<td>age MAE (years)</td><td>{mae:.2f}</td>" in page and 'id="age"' in page
    (entry,) = find_entries(tmp_path / "runs")
    assert (entry.age_mae, entry.age_f1) == (result["oof_age_mae"], result["oof_f1_age"])
    fold = read_run(group / "fold0", tmp_path / "runs")
    best = pd.read_csv(group / "fold0" / "summary.csv").iloc[0]
    assert (fold.age_mae, fold.age_f1) == (best["valid_age_mae"], best["valid_f1_age"])


def test_the_bias_guard_cuts_each_held_out_fold_at_borders_learned_without_it(tmp_path):
    """With learned borders, fold f's held-out biases are fitted and applied on probabilities cut at
    the borders (and scale) of the other folds, never at the borders that saw fold f."""
    from maskcls.evaluation.age_borders import with_age_borders
    from maskcls.evaluation.calibrate import fit_biases
    from maskcls.metrics import macro_f1

    path, target = biased_estimates(tmp_path)
    table = pd.read_csv(path)
    rng = np.random.default_rng(1)
    table[AGE_ESTIMATE_COLUMN] += rng.normal(0, 4, len(table)) * (table["fold"] == 1)  # fold 1: a noisy estimate
    table.to_csv(path, index=False)
    result = calibrate(path)
    age = result.age
    assert age.guard_passed and len(set(map(tuple, age.fold_borders))) > 1 and len(age.fold_scales) == 3
    probabilities = table[PROBABILITY_COLUMNS].to_numpy()
    estimates, folds = table[AGE_ESTIMATE_COLUMN].to_numpy(), table["fold"].to_numpy()
    heldout, fold_biases = np.empty(len(table), dtype=np.int64), []
    for fold in range(3):
        seen = np.log(
            np.clip(
                with_age_borders(probabilities, estimates, age.fold_borders[fold], age.fold_scales[fold]), 1e-7, None
            )
        )
        inside = folds != fold
        fold_biases.append(fit_biases(seen[inside], target[inside]).tolist())
        heldout[~inside] = (seen[~inside] + fold_biases[-1]).argmax(axis=1)
    assert result.heldout_f1_after == round(macro_f1(target, heldout), 6)
    assert result.fold_biases == fold_biases and any(map(any, fold_biases)) and not result.guard_passed
    # predict's check decides out-of-fold rows as the file decides the test: each fold at its own
    # borders, with the zero biases written (the fold biases did not pass their guard)
    written = read_calibration(result.write(tmp_path / "calibration.json"))
    outputs = table[[*PROBABILITY_COLUMNS, AGE_ESTIMATE_COLUMN]].to_numpy()
    decided = held_out_classes(outputs, folds, written)
    cross_validated = cross_validated_f1(tmp_path / "calibration.json")
    assert round(macro_f1(target, decided), 6) == age.heldout_f1_after == cross_validated
