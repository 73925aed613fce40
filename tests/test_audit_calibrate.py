"""Beyond the toolbox: the label audit and macro-F1 calibration."""

import json

import numpy as np
import pandas as pd
import pytest

from maskcls.data.layout import read_dataset
from maskcls.errors import UserError
from maskcls.evaluation.audit import age_inside, audit, corrections_yaml
from maskcls.evaluation.calibrate import apply_biases, calibrate, held_out_classes, read_calibration
from maskcls.evaluation.ensemble import ensemble
from maskcls.inference.predict import PROBABILITY_COLUMNS
from maskcls.labels import MASK_STEMS, encode_class
from maskcls.metrics import macro_f1
from tests.helpers import make_layout, run_cli

PROFILES = [f"{k:06d}_{'female' if k % 2 else 'male'}_Asian_{20 + 3 * k}" for k in range(1, 13)]


def confident(label: int, strength: float, rng) -> np.ndarray:
    """18 probabilities with ``strength`` on ``label`` and a little noise elsewhere."""
    row = rng.random(18) * (1 - strength) / 9
    row[label] = strength
    return row / row.sum()


def write_oof(group, wrong_gender="000003_female_Asian_29", swapped="000006_male_Asian_38", seed=0):
    """OOF probabilities of a good model on 12 people; one person's gender label is wrong (the
    photos say male) and one person's incorrect_mask/normal files are swapped."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, profile in enumerate(PROFILES):
        _, gender_text, _, age_text = profile.split("_")
        gender, age = int(gender_text == "female"), 0 if int(age_text) < 30 else 1 if int(age_text) < 60 else 2
        for stem, mask in MASK_STEMS.items():
            given = encode_class(mask, gender, age)
            seen_gender = 0 if profile == wrong_gender else gender
            seen_mask = {1: 2, 2: 1}.get(int(mask), int(mask)) if profile == swapped else mask
            probabilities = confident(encode_class(seen_mask, seen_gender, age), 0.8, rng)
            rows.append({"path": f"train/images/{profile}/{stem}.jpg", "profile": profile, "target": given,
                         "fold": index % 3, **dict(zip(PROBABILITY_COLUMNS, probabilities, strict=True))})  # fmt: skip
    group.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(group / "oof_probabilities.csv", index=False)
    return group


def test_audit_ranks_the_planted_mistakes_first_and_writes_applicable_corrections(tmp_path):
    group = write_oof(tmp_path / "group")
    suggestions = audit(group)
    top = suggestions.head(2)
    assert set(zip(top["profile"], top["attribute"], strict=True)) == {
        ("000003_female_Asian_29", "gender"), ("000006_male_Asian_38", "mask"),
    }  # fmt: skip
    gender_row = top[top["attribute"] == "gender"].iloc[0]
    assert gender_row["suggested"] == "male" and gender_row["evidence"].startswith("7 of 7 images say male")
    layout = make_layout(tmp_path / "data", PROFILES)
    fixes = tmp_path / "fixes.yaml"
    fixes.write_text(corrections_yaml(top, str(group)))
    table = read_dataset(layout, corrections=fixes).train.set_index("path")
    person = table.loc["train/images/000003_female_Asian_29/mask1.jpg"]
    assert person["gender"] == 0  # male now
    swapped = "train/images/000006_male_Asian_38/"
    assert table.loc[swapped + "incorrect_mask.jpg", "mask"] == 2 and table.loc[swapped + "normal.jpg", "mask"] == 1


def test_audit_cli_prints_the_table_and_never_edits_in_place(tmp_path, capsys):
    group = write_oof(tmp_path / "group")
    before = (group / "oof_probabilities.csv").read_bytes()
    code, out, _ = run_cli("audit", str(group), "--top", "5", capsys=capsys)
    assert code == 0 and "000003_female_Asian_29" in out and (group / "audit.yaml").exists()
    assert (group / "oof_probabilities.csv").read_bytes() == before
    code, _, err = run_cli("audit", str(tmp_path), capsys=capsys)
    assert code == 2 and "oof_probabilities.csv: not found" in err


def test_age_suggestion_moves_the_age_just_inside_the_group():
    assert age_inside(2, 58) == 60 and age_inside(0, 31) == 29 and age_inside(1, 25) == 30 and age_inside(1, 45) == 45


def biased_oof(tmp_path, rng, images=900):
    """A model that under-predicts class 2: its probability is scaled down before normalising."""
    target = rng.integers(0, 4, images)
    logits = rng.normal(0, 1, (images, 18)) - 4.0
    logits[:, :4] += 3.0
    logits[np.arange(images), target] += 1.6
    logits[:, 2] -= 1.2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame(probabilities, columns=PROBABILITY_COLUMNS)
    table.insert(0, "fold", np.arange(images) % 3)
    table.insert(0, "target", target)
    table.insert(0, "path", [f"img{k}.jpg" for k in range(images)])
    path = tmp_path / "oof.csv"
    table.to_csv(path, index=False)
    return path


def test_calibration_fixes_an_under_predicted_class_and_passes_the_guard(tmp_path):
    result = calibrate(biased_oof(tmp_path, np.random.default_rng(0)))
    assert result.guard_passed and result.heldout_f1_after > result.oof_f1_before + 0.01
    assert result.biases[2] > 0.3  # the under-predicted class is pushed up
    path = result.write(tmp_path / "calibration.json")
    assert read_calibration(path).biases == result.biases and read_calibration(path).age is None
    table = pd.read_csv(tmp_path / "oof.csv")  # each fold decided with the biases learned on the other two
    decided = held_out_classes(table[PROBABILITY_COLUMNS].to_numpy(), table["fold"].to_numpy(), read_calibration(path))
    assert round(macro_f1(table["target"], decided), 6) == result.heldout_f1_after
    assert len(result.fold_biases) == 3 and result.fold_biases[0] != result.biases


def test_calibration_guard_writes_zero_biases_when_held_out_folds_do_not_gain(tmp_path):
    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.dirichlet(np.ones(18), 360), columns=PROBABILITY_COLUMNS)  # knows nothing
    table.insert(0, "fold", np.arange(360) % 3)
    table.insert(0, "target", rng.integers(0, 18, 360))
    table.to_csv(tmp_path / "noise.csv", index=False)
    result = calibrate(tmp_path / "noise.csv")
    assert not result.guard_passed and result.biases == [0.0] * 18 and result.oof_f1_after == result.oof_f1_before


def test_calibration_applies_in_ensemble_and_bad_files_are_named(tmp_path, capsys):
    path = biased_oof(tmp_path, np.random.default_rng(2))
    calibration = calibrate(path).write(tmp_path / "calibration.json")
    plain = ensemble([path])
    calibrated = ensemble([path], calibration=calibration)
    assert (calibrated.classes == 2).sum() > (plain.classes == 2).sum()
    biases = np.asarray(read_calibration(calibration).biases)
    expected = apply_biases(plain.table[PROBABILITY_COLUMNS].to_numpy(), biases)
    assert np.allclose(calibrated.table[PROBABILITY_COLUMNS].to_numpy(), expected)
    with pytest.raises(UserError, match="soft vote"):
        ensemble([path], method="hard", calibration=calibration)
    (tmp_path / "bad.json").write_text(json.dumps({"biases": [0.0] * 17}))
    with pytest.raises(UserError, match="bad.json: 'biases' must be 18"):
        read_calibration(tmp_path / "bad.json")
    code, out, _ = run_cli("calibrate", str(path), capsys=capsys)
    assert code == 0 and "held-out folds" in out and (tmp_path / "oof.calibration.json").exists()


def test_audit_says_when_the_model_is_too_weak_to_trust(tmp_path, caplog):
    from maskcls.evaluation.audit import weak_model_warnings

    group = write_oof(tmp_path / "group")
    table = pd.read_csv(group / "oof_probabilities.csv")
    planted = [warning.split(" (")[0] for warning in weak_model_warnings(table)]
    assert planted == ["the model is too weak to audit age"]  # the planted table's age F1 is 0.67
    uniform = table.copy()
    uniform[PROBABILITY_COLUMNS] = 1 / 18  # argmax is class 0 everywhere: wear / male / <30
    warnings = weak_model_warnings(uniform)
    assert [warning.split(" (")[0] for warning in warnings] == [
        f"the model is too weak to audit {name}" for name in ("mask", "gender", "age")
    ]
    uniform.to_csv(group / "oof_probabilities.csv", index=False)
    with caplog.at_level("WARNING", logger="maskcls"):
        audit(group)
    assert caplog.messages == warnings


def test_a_calibrations_cross_validated_f1_is_that_of_the_decisions_it_makes(tmp_path):
    from maskcls.evaluation.calibrate import cross_validated_f1

    age = {"guard_passed": True, "heldout_f1_after": 0.62}
    unused = {"biases": [0.0] * 18, "guard_passed": False, "heldout_f1_after": 0.59, "oof_f1_before": 0.61}
    records = {
        "biases kept": ({**unused, "biases": [0.3] + [0.0] * 17, "guard_passed": True, "heldout_f1_after": 0.64,
                         "age": age}, 0.64),
        "borders only": ({**unused, "age": age}, 0.62),
        "no bias moved": ({**unused, "guard_passed": True, "heldout_f1_after": 0.64, "age": age}, 0.62),
        "nothing learned": ({**unused, "age": {**age, "guard_passed": False}}, 0.61),
        "written by hand": ({"biases": [0.3] + [0.0] * 17}, None),
    }  # fmt: skip
    for name, (record, wanted) in records.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(record))
        assert cross_validated_f1(path) == wanted, name
    assert cross_validated_f1(tmp_path / "missing.json") is None
