"""Pseudo-labels: which test photos become labels, how a run trains on them (every fold, never
validated on), and ``maskcls pseudo`` on a cv group that predicted its test set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.errors import DataError, UserError
from maskcls.experiments.cv import cross_validate
from maskcls.experiments.pseudo import pseudo_labels, round_changes
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.training.prepare import prepare_data
from tests.helpers import make_layout, run_cli, tiny_config


def write_test_probabilities(folder, rows: list[tuple[str, int, float]], estimate: list[float] | None = None):
    """One row per (ImageID, class, its probability); the rest spread evenly over the other classes."""
    table = []
    for image, label, probability in rows:
        values = np.full(18, (1 - probability) / 17)
        values[label] = probability
        table.append({"ImageID": image, **dict(zip(PROBABILITY_COLUMNS, values, strict=True))})
    frame = pd.DataFrame(table)
    if estimate is not None:
        frame["age_estimate"] = estimate
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "test_probabilities.csv", index=False)


def test_each_fold_models_confident_test_photos_become_its_hard_labels(tmp_path):
    group = tmp_path / "g-cv2"
    group.mkdir()
    (group / "group.json").write_text('{"runs": ["fold0", "fold1"]}')
    write_test_probabilities(group / "fold0", [("a.jpg", 7, 0.95), ("b.jpg", 16, 0.5), ("c.jpg", 5, 0.9)])
    write_test_probabilities(group / "fold1", [("a.jpg", 7, 0.5), ("b.jpg", 16, 0.99), ("c.jpg", 5, 0.2)])
    write_test_probabilities(group, [("a.jpg", 0, 1.0), ("b.jpg", 0, 1.0), ("c.jpg", 0, 1.0)])  # the ensemble's: unused
    labels = pseudo_labels(group, 0.9)
    assert labels.to_dict("records") == [  # class 7 = incorrect / male / 30-59; 5 = wear / female / 60+
        {"path": "eval/images/a.jpg", "mask": 1, "gender": 0, "age": 45.0, "probability": 0.95, "fold": 0},
        {"path": "eval/images/c.jpg", "mask": 0, "gender": 1, "age": 70.0, "probability": 0.9, "fold": 0},
        {"path": "eval/images/b.jpg", "mask": 2, "gender": 1, "age": 45.0, "probability": 0.99, "fold": 1},
    ]
    write_test_probabilities(group / "fold1", [("a.jpg", 7, 0.95)], estimate=[33.4])
    assert pseudo_labels(group, 0.9).query("fold == 1")["age"].tolist() == [33.4]  # an age head's own estimate
    with pytest.raises(UserError, match="threshold must be in"):
        pseudo_labels(group, 0)
    (group / "fold1/test_probabilities.csv").unlink()
    with pytest.raises(UserError, match=r"fold1/test_probabilities.csv: not found; run `maskcls predict"):
        pseudo_labels(group, 0.9)


def test_every_fold_trains_on_the_pseudo_labels_and_none_validates_on_them(tmp_path):
    profiles = [f"00000{k}_{'male' if k % 2 else 'female'}_Asian_{20 + 9 * k}" for k in range(1, 7)]
    root = make_layout(tmp_path / "data", profiles, eval_names=["e1.jpg", "e2.jpg"])
    labels = tmp_path / "pseudo.csv"
    pd.DataFrame(
        [
            {"path": "eval/images/e1.jpg", "mask": 2, "gender": 1, "age": 70, "probability": 0.99},
            {"path": "eval/images/e2.jpg", "mask": 0, "gender": 0, "age": 22, "probability": 0.95},
        ]
    ).to_csv(labels, index=False)  # fmt: skip (no fold column: every fold's)
    for fold in range(3):
        config = tiny_config(root, tmp_path, f"data.pseudo={labels}", f"train.fold={fold}")
        data = prepare_data(config, tmp_path / "runs")
        extra = data.table.index[data.table["stem"] == "pseudo"].to_numpy()
        assert data.table.loc[extra, "path"].tolist() == ["eval/images/e1.jpg", "eval/images/e2.jpg"]
        assert set(extra) <= set(data.train_rows) and not set(extra) & set(data.valid_rows)
        assert data.train_labels[extra].tolist() == [2 * 6 + 1 * 3 + 2, 0]  # not wear / female / 60+, wear / male / <30
        assert len(data.train_rows) + len(data.valid_rows) == 6 * 7 + 2 and len(data.images) == 6 * 7 + 2
    by_fold = pd.read_csv(labels).assign(fold=[1, 2])  # e1 for fold 1, e2 for fold 2
    by_fold.to_csv(labels, index=False)
    for fold, expected in ((0, []), (1, ["eval/images/e1.jpg"]), (2, ["eval/images/e2.jpg"])):
        data = prepare_data(
            tiny_config(root, tmp_path, f"data.pseudo={labels}", f"train.fold={fold}"), tmp_path / "runs"
        )
        assert data.table.loc[data.table["stem"] == "pseudo", "path"].tolist() == expected
    pd.DataFrame([{"path": "eval/images/gone.jpg", "mask": 0, "gender": 0, "age": 22}]).to_csv(labels, index=False)
    with pytest.raises(DataError, match=r"pseudo.csv: 1 photo\(s\) not in .*eval/images/gone.jpg"):
        prepare_data(tiny_config(root, tmp_path, f"data.pseudo={labels}"), tmp_path / "runs")


def test_pseudo_cross_validates_the_group_again_with_its_confident_test_photos(synth_small, tmp_path, capsys):
    group = cross_validate(tiny_config(synth_small, tmp_path, "name=ps"), runs_dir=tmp_path / "runs").folder
    assert run_cli("predict", str(group), "--data", str(synth_small), "-q", capsys=capsys)[0] == 0
    tested = pd.read_csv(group / "fold0/test_probabilities.csv")[PROBABILITY_COLUMNS].to_numpy().max(axis=1)
    threshold = round(float(np.quantile(tested, 0.5)), 4)  # a tiny model is unsure: half of its photos
    confident = pseudo_labels(group, threshold)
    assert (confident["fold"] == 0).sum() == (tested >= threshold).sum() > 0
    code, out, err = run_cli("pseudo", str(group), "--threshold", str(threshold), "-q", capsys=capsys)
    assert code == 0, err
    assert f"{len(confident)} pseudo-labels of the fold models at probability >= {threshold}" in out
    second = tmp_path / "runs" / "ps-pseudo-cv3"
    oof = pd.read_csv(second / "oof_probabilities.csv")
    first = pd.read_csv(group / "oof_probabilities.csv")
    assert oof["path"].tolist() == first["path"].tolist()  # the same folds, real photos only
    assert (oof["fold"] == first["fold"]).all()
    config = pd.read_json(second / "fold0" / "config.json", typ="series")
    (written,) = group.glob("pseudo_labels-*.csv")
    assert config["data"]["pseudo"] == str(written) and f"{written}: " in out
    pd.testing.assert_frame_equal(pd.read_csv(written), confident.round(6), check_dtype=False)
    code, _, err = run_cli("pseudo", str(group), "--threshold", str(threshold / 2), "-q", capsys=capsys)
    assert code == 2 and "a cv group with another config already uses this name" in err  # other labels


def test_soft_pseudo_labels_give_each_fold_its_models_probabilities(synth_small, tmp_path, capsys):
    group = cross_validate(
        tiny_config(synth_small, tmp_path, "name=sp", "train.folds=2"), runs_dir=tmp_path / "runs"
    ).folder
    assert run_cli("predict", str(group), "--data", str(synth_small), "-q", capsys=capsys)[0] == 0
    tables = [pd.read_csv(group / f"fold{k}" / "test_probabilities.csv") for k in range(2)]
    threshold = round(float(np.quantile(tables[0][PROBABILITY_COLUMNS].to_numpy().max(axis=1), 0.5)), 4)
    code, out, err = run_cli("pseudo", str(group), "--threshold", str(threshold), "--soft", "0.6", "-q", capsys=capsys)
    assert code == 0, err
    (written,) = group.glob("pseudo_soft-*.csv")
    labels = pd.read_csv(written)
    for fold, table in enumerate(tables):  # each fold: its own model's confident photos, all 18 probabilities
        confident = table[table[PROBABILITY_COLUMNS].max(axis=1) >= threshold]
        rows = labels[labels["fold"] == fold]
        assert rows["path"].tolist() == ("eval/images/" + confident["ImageID"]).tolist()
        assert np.allclose(rows[PROBABILITY_COLUMNS].to_numpy(), confident[PROBABILITY_COLUMNS].to_numpy(), atol=5e-7)
    assert f"{written}: {len(labels)} soft pseudo-labels of the fold models at probability >= {threshold}" in out
    second = tmp_path / "runs" / "sp-pseudo-soft-cv2"
    for fold in range(2):
        config = json.loads((second / f"fold{fold}" / "config.json").read_text())
        assert (config["data"]["teacher"], config["data"]["pseudo"], config["train"]["distill"]) == (
            str(written),
            None,
            0.6,
        )
        overrides = (f"data.teacher={written}", "train.folds=2", f"train.fold={fold}")
        data = prepare_data(tiny_config(synth_small, tmp_path, *overrides), tmp_path / "runs")
        taught = data.table.index[data.table["stem"] == "teacher"]
        assert data.table.loc[taught, "path"].tolist() == labels.loc[labels["fold"] == fold, "path"].tolist()
    oof = pd.read_csv(second / "oof_probabilities.csv")
    assert oof["path"].tolist() == pd.read_csv(group / "oof_probabilities.csv")["path"].tolist()  # real photos only


def test_fine_tuned_second_round_starts_each_fold_from_its_own_first_round_model(synth_small, tmp_path, capsys):
    group = cross_validate(
        tiny_config(synth_small, tmp_path, "name=ft", "train.folds=2"), runs_dir=tmp_path / "runs"
    ).folder
    assert run_cli("predict", str(group), "--data", str(synth_small), "-q", capsys=capsys)[0] == 0
    plain = json.loads((group / "group.json").read_text())["config"]
    labels = tmp_path / "labels.csv"
    assert round_changes(group, plain, labels, soft=None, fine_tune=2) == (
        {"data.pseudo": str(labels), "model.weights": str(group / "fold{fold}" / "best.pt"), "train.epochs": 2},
        {"name": "ft-pseudo-ft", "optim.lr": plain["optim"]["lr"] / 4, "optim.warmup_epochs": 0},  # -o may change
    )
    frozen = ("--fine-tune", "1", "-o", "optim.lr=0", "-o", "optim.weight_decay=0")  # the weights stay where they start
    code, _, err = run_cli("pseudo", str(group), "--threshold", "0.01", *frozen, "-q", capsys=capsys)
    assert code == 0, err
    second = tmp_path / "runs" / "ft-pseudo-ft-cv2"
    first_models = [backbone_parameters(group / f"fold{k}" / "best.pt") for k in range(2)]
    for fold in range(2):
        config = json.loads((second / f"fold{fold}" / "config.json").read_text())
        assert (config["model"]["weights"], config["train"]["epochs"]) == (str(group / f"fold{fold}" / "best.pt"), 1)
        tuned = backbone_parameters(second / f"fold{fold}" / "best.pt")
        assert all(torch.equal(tuned[key], first_models[fold][key]) for key in tuned)  # its own fold's model
        assert not all(torch.equal(tuned[key], first_models[1 - fold][key]) for key in tuned)
    (group / "fold1" / "best.pt").unlink()
    code, _, err = run_cli(
        "pseudo", str(group), "--threshold", "0.01", "--fine-tune", "1", "-o", "name=x", capsys=capsys
    )
    assert code == 2 and f"{group / 'fold1' / 'best.pt'}: weights file not found" in err
    assert not (tmp_path / "runs" / "x-cv2").exists()  # every fold's file checked before anything trains


def backbone_parameters(checkpoint) -> dict:
    """A maskcls checkpoint's backbone tensors that training changes through the optimizer (no
    batch-norm statistics, which a forward pass in training mode moves)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    return {key: value for key, value in state.items() if key.startswith("backbone.") and not key.endswith(statistics)}
