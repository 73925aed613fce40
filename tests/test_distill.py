"""Distillation: the loss on a teacher's soft labels, the teacher file a run reads, and
``maskcls distill`` on a cv group that predicted its test set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from maskcls.data.teacher import teacher_probabilities_of, teacher_test_rows
from maskcls.errors import DataError
from maskcls.experiments.cv import cross_validate
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS, decode_classes
from maskcls.training.losses import HeadLoss
from maskcls.training.prepare import prepare_data
from tests.helpers import make_layout, run_cli, tiny_config

CE = [("cross_entropy", 1.0, {})]


def targets_with_teacher(rng, count: int, unlabelled: list[int]) -> tuple[torch.Tensor, np.ndarray]:
    classes = rng.integers(0, 18, count)
    teacher = rng.dirichlet(np.ones(18), count)
    teacher[unlabelled] = np.nan
    targets = np.column_stack([classes, rng.integers(18, 80, count), teacher]).astype(np.float32)
    return torch.from_numpy(targets), teacher


@pytest.mark.parametrize("head", ["multi", "single"])
def test_the_loss_learns_the_labels_and_the_teachers_probabilities_in_the_share_asked(head):
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 1, (6, 18 if head == "single" else 3 + 2 + 3)).astype(np.float32))
    targets, teacher = targets_with_teacher(rng, 6, unlabelled=[1, 4])
    hard = HeadLoss(CE, head)(logits, targets[:, :2].long())
    assert HeadLoss(CE, head, distill=0.0)(logits, targets) == hard  # no share: the labels alone
    labelled = [0, 2, 3, 5]
    soft = torch.from_numpy(teacher[labelled].astype(np.float32))
    if head == "single":
        expected_soft = -(soft * logits[labelled].log_softmax(-1)).sum(-1).mean()
    else:
        cube, parts = soft.reshape(-1, 3, 2, 3), {"mask": (0, 3), "gender": (3, 5), "age": (5, 8)}
        sums = {"mask": cube.sum((2, 3)), "gender": cube.sum((1, 3)), "age": cube.sum((1, 2))}
        expected_soft = sum(
            -(sums[name] * logits[labelled, a:b].log_softmax(-1)).sum(-1).mean() for name, (a, b) in parts.items()
        )
    mixed = HeadLoss(CE, head, distill=0.3)(logits, targets)
    assert torch.allclose(mixed, 0.7 * hard + 0.3 * expected_soft, atol=1e-6)
    assert torch.allclose(HeadLoss(CE, head, distill=1.0)(logits, targets), expected_soft, atol=1e-6)
    one_hot = F.one_hot(targets[:, 0].long(), 18).float()  # the teacher agreeing with the labels: as hard
    agreeing = torch.cat([targets[:, :2], one_hot], dim=1)
    if head == "single":
        assert torch.allclose(HeadLoss(CE, head, distill=1.0)(logits, agreeing), hard, atol=1e-6)


def test_a_run_reads_the_teachers_probabilities_and_trains_on_its_test_photos(tmp_path):
    profiles = [f"00000{k}_{'male' if k % 2 else 'female'}_Asian_{20 + 9 * k}" for k in range(1, 7)]
    root = make_layout(tmp_path / "data", profiles, eval_names=["e1.jpg", "e2.jpg"])
    rng = np.random.default_rng(1)
    photos = [f"train/images/{profiles[0]}/mask1.jpg", f"train/images/{profiles[3]}/normal.jpg"]
    paths = [*photos, "eval/images/e1.jpg", "eval/images/e2.jpg"]
    values = rng.dirichlet(np.ones(18), 4)
    values[2], values[3] = np.eye(18)[17] * 0.9 + 0.1 / 18, np.eye(18)[6] * 0.8 + 0.2 / 18
    teacher = pd.DataFrame(values, columns=PROBABILITY_COLUMNS).assign(path=paths)
    teacher.to_csv(tmp_path / "teacher.csv", index=False)
    data = prepare_data(tiny_config(root, tmp_path, f"data.teacher={tmp_path / 'teacher.csv'}"), tmp_path / "runs")
    extra = data.table.index[data.table["stem"] == "teacher"].to_numpy()
    assert data.table.loc[extra, "path"].tolist() == ["eval/images/e1.jpg", "eval/images/e2.jpg"]
    assert set(extra) <= set(data.train_rows) and not set(extra) & set(data.valid_rows)
    assert data.train_labels[extra].tolist() == [17, 6]  # the teacher's most likely classes
    assert data.table.loc[extra, "age"].tolist() == [70, 22]  # typical ages of 60+ and <30
    targets = data.train_targets
    assert targets.shape == (6 * 7 + 2, 20) and targets.dtype == np.float32
    rows = [int(np.flatnonzero(data.table["path"] == path)[0]) for path in paths]
    assert np.allclose(targets[rows, 2:], values, atol=1e-6)
    assert np.isnan(np.delete(targets[:, 2:], rows, axis=0)).all()  # the photos it did not label
    assert (targets[:, 0] == data.train_labels).all() and (targets[:, 1] == data.ages).all()
    teacher.assign(p0=teacher["p0"] + 0.5).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="bad.csv: line 2: the 18 probabilities must be numbers summing to 1"):
        prepare_data(tiny_config(root, tmp_path, f"data.teacher={tmp_path / 'bad.csv'}"), tmp_path / "runs")
    teacher.assign(p3=["x", 0.1, 0.1, 0.1]).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match="text.csv: line 2: the 18 probabilities must be numbers summing to 1"):
        prepare_data(tiny_config(root, tmp_path, f"data.teacher={tmp_path / 'text.csv'}"), tmp_path / "runs")
    teacher.assign(age=[20.0, float("nan"), 61.2, "old"]).to_csv(tmp_path / "ageless.csv", index=False)
    with pytest.raises(DataError, match="ageless.csv: line 5: a test photo's age must be a number of years"):
        prepare_data(tiny_config(root, tmp_path, f"data.teacher={tmp_path / 'ageless.csv'}"), tmp_path / "runs")
    teacher.drop(columns="p17").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"short.csv: missing column\(s\) p17"):
        prepare_data(tiny_config(root, tmp_path, f"data.teacher={tmp_path / 'short.csv'}"), tmp_path / "runs")


def test_teacher_rows_label_test_photos_only_and_probabilities_follow_the_paths():
    teacher = pd.DataFrame(np.eye(18)[[4, 11]], columns=PROBABILITY_COLUMNS).assign(path=["train/a.jpg", "eval/b.jpg"])
    rows = teacher_test_rows(teacher)
    mask, gender, age = decode_classes(np.array([11]))
    assert rows["path"].tolist() == ["eval/b.jpg"] and rows["profile"].tolist() == ["teacher:eval/b.jpg"]
    assert (rows["mask"].tolist(), rows["gender"].tolist()) == (mask.tolist(), gender.tolist())
    assert rows["age"].tolist() == [70]  # no estimate: a typical age of the 60+ group
    aged = teacher.assign(age=[float("nan"), 58.6])  # a training photo's age is its label's: left empty
    assert teacher_test_rows(aged)["age"].tolist() == [59]  # the estimate, rounded to its year
    found = teacher_probabilities_of(teacher, pd.Series(["eval/b.jpg", "train/c.jpg", "train/a.jpg"]))
    assert (
        np.array_equal(found[0], np.eye(18)[11])
        and np.isnan(found[1]).all()
        and np.array_equal(found[2], np.eye(18)[4])
    )


def test_distill_teaches_the_groups_probabilities_into_one_student(synth_small, tmp_path, capsys):
    years = ("model.head=multi", "model.age_head=distribution")  # an age head that estimates years
    config = tiny_config(synth_small, tmp_path, "name=dt", "train.folds=2", *years)
    group = cross_validate(config, runs_dir=tmp_path / "runs").folder
    code, out, err = run_cli("distill", str(group), "-q", capsys=capsys)
    assert code == 2 and "maskcls predict" in err  # no test probabilities yet
    assert run_cli("predict", str(group), "--data", str(synth_small), "-q", capsys=capsys)[0] == 0
    code, out, err = run_cli(
        "distill", str(group), "--weight", "0.7", "-o", "train.epochs=2", "-o", "model.dropout=0.1", "-q", capsys=capsys
    )  # fmt: skip
    assert code == 0, err
    (written,) = group.glob("teacher-*.csv")
    oof, test = pd.read_csv(group / "oof_probabilities.csv"), pd.read_csv(group / "test_probabilities.csv")
    taught = pd.read_csv(written)
    assert taught["path"].tolist() == oof["path"].tolist() + ("eval/images/" + test["ImageID"]).tolist()
    expected = np.vstack([oof[PROBABILITY_COLUMNS].to_numpy(), test[PROBABILITY_COLUMNS].to_numpy()])
    assert np.allclose(taught[PROBABILITY_COLUMNS].to_numpy(), expected, atol=5e-7)
    test_rows = taught["path"].str.startswith("eval/")
    assert taught.loc[test_rows, "age"].tolist() == test[AGE_ESTIMATE_COLUMN].round(1).tolist()  # the ensemble's years
    assert taught.loc[~test_rows, "age"].isna().all()
    assert f"{written}: the teacher's probabilities of {len(taught)} photos" in out
    student = tmp_path / "runs" / "dt-student-fold0"
    config = json.loads((student / "config.json").read_text())
    assert config["data"]["teacher"] == str(written) and config["train"]["distill"] == 0.7
    assert config["data"]["pseudo"] is None  # the teacher labels every test photo
    assert (config["train"]["fold"], config["train"]["epochs"], config["model"]["dropout"]) == (0, 2, 0.1)
    summary = pd.read_csv(student / "summary.csv")
    assert len(summary) == 2 and f"{student}: best valid macro F1" in out
    valid = pd.read_csv(student / "valid_probabilities.csv")
    first = pd.read_csv(group / "fold0" / "valid_probabilities.csv")
    assert valid["path"].tolist() == first["path"].tolist()  # fold 0's people, real photos only
