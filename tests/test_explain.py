"""maskcls explain: the layer found in any timm backbone, Grad-CAM per head equal to one computed
by hand, the share of a map inside a face box, the photos each contact sheet shows, and the
command on a cv group of a synthetic set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from maskcls.cam.inside import face_boxes, share_inside
from maskcls.cam.layers import find_target_layer, target_layer
from maskcls.cam.maps import activation_maps, head_log_probabilities
from maskcls.errors import UserError
from maskcls.experiments.cv import cross_validate
from maskcls.experiments.explain import HeadView, pick
from maskcls.training.models import FaceAttributeModel
from tests.helpers import run_cli, tiny_config


@pytest.mark.parametrize("name, expected", [
    ("test_resnet", "backbone.layer4"), ("test_efficientnet", "backbone.bn2"), ("test_convnext", "backbone.norm_pre"),
    ("test_nfnet", "backbone.final_act"), ("test_byobnet", "backbone.final_conv"),
])  # fmt: skip
def test_the_last_feature_map_is_found_in_timm_backbones(name, expected):
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    model = FaceAttributeModel(backbone, backbone.num_features, head="multi").eval()
    found, module = find_target_layer(model, torch.zeros(1, 3, 64, 64))
    assert found == expected and module is model.get_submodule(expected)


def test_a_transformer_or_a_misspelt_layer_is_a_one_line_error():
    backbone = timm.create_model("test_vit", pretrained=False, num_classes=0)
    model = FaceAttributeModel(backbone, backbone.num_features).eval()
    with pytest.raises(UserError, match="no layer gives a feature map .*name one with --layer"):
        find_target_layer(model, torch.zeros(1, 3, 64, 64))
    with pytest.raises(UserError, match=r"layer 'backbone.blocks.9' is not in the model \(did you mean"):
        target_layer(model, torch.zeros(1, 3, 64, 64), "backbone.blocks.9")


def grad_cam_by_hand(model, batch, layer, head: str, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM written out: the layer's activations A and the gradients of the head's
    log-probability of each class; weights = mean gradient per channel; relu(sum w A), upsampled."""
    kept = {}
    handle = layer.register_forward_hook(lambda _m, _i, output: kept.setdefault("a", output))
    columns = {"mask": slice(0, 3), "gender": slice(3, 5), "age": slice(5, 8), "class": slice(0, 18)}[head]
    log_probabilities = model(batch)[:, columns].log_softmax(dim=1)  # the logits side by side: mask, gender, age
    scores = log_probabilities[torch.arange(len(batch)), torch.as_tensor(classes)]
    handle.remove()
    gradients = torch.autograd.grad(scores.sum(), kept["a"])[0]
    cam = (gradients.mean(dim=(2, 3), keepdim=True) * kept["a"]).sum(dim=1, keepdim=True).clamp_min(0)
    cam = torch.nn.functional.interpolate(cam, size=batch.shape[-2:], mode="bilinear")[:, 0].detach().numpy()
    peaks = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peaks > 0, peaks, 1)[:, None, None]


@pytest.mark.parametrize("head_kind", ["multi", "single"])
def test_each_heads_map_is_grad_cam_of_its_own_predicted_class(head_kind):
    torch.manual_seed(0)
    backbone = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    model = FaceAttributeModel(backbone, backbone.num_features, head=head_kind).eval()
    batch = torch.randn(4, 3, 64, 48)
    layer = model.backbone.layer4
    found = activation_maps(model, batch, layer)
    assert list(found) == (["mask", "gender", "age"] if head_kind == "multi" else ["class"])
    with torch.no_grad():
        log_probabilities = head_log_probabilities(model, model(batch))
    for head, maps in found.items():
        predicted = log_probabilities[head].argmax(dim=1).numpy()
        assert (maps.classes == predicted).all() and maps.maps.shape == (4, 64, 48)
        np.testing.assert_allclose(maps.maps, grad_cam_by_hand(model, batch, layer, head, predicted), atol=1e-5)
    asked = {"gender": np.array([1, 0, 1, 0])} if head_kind == "multi" else {"class": np.array([3, 3, 17, 0])}
    head, classes = next(iter(asked.items()))
    chosen = activation_maps(model, batch, layer, asked)[head]
    np.testing.assert_allclose(chosen.maps, grad_cam_by_hand(model, batch, layer, head, classes), atol=1e-5)


def test_the_share_of_a_map_inside_a_box():
    maps = np.zeros((3, 4, 4))
    maps[0, :2, :2] = 1  # all its mass in the top-left 2x2
    maps[1] = 1  # spread evenly
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]], float)
    np.testing.assert_array_equal(share_inside(maps, boxes), [1.0, 0.25, np.nan])  # no mass: NaN
    np.testing.assert_array_equal(share_inside(maps, boxes, lower_half=True), [0.5, 0.125, np.nan])
    np.testing.assert_array_equal(share_inside(maps[:1], np.array([[np.nan] * 4])), [np.nan])


def test_face_boxes_follow_the_crop_to_the_models_input(tmp_path):
    (tmp_path / "truth").mkdir()
    pd.DataFrame([{"path": "train/images/p/mask1.jpg", "x0": 150, "y0": 120, "x1": 250, "y1": 280}]).to_csv(
        tmp_path / "truth/boxes.csv", index=False
    )
    (tmp_path / "crop.json").write_text("{}")
    crop = {"path": "train/images/p/mask1.jpg", "crop_x0": 100, "crop_y0": 80, "crop_x1": 300, "crop_y1": 400}
    pd.DataFrame([crop]).to_csv(tmp_path / "boxes.csv", index=False)
    found = face_boxes(tmp_path, ["train/images/p/mask1.jpg", "train/images/q/mask1.jpg"], (50, 80))
    np.testing.assert_allclose(found[0], [12.5, 10.0, 37.5, 50.0])  # (150-100) * 50/200 ... (280-80) * 80/320
    assert np.isnan(found[1]).all()


def test_each_sheet_row_holds_the_photos_of_its_category():
    view = HeadView(
        probabilities=np.zeros((6, 2)),
        predicted=np.array([0, 1, 1, 0, 1, 0]),
        confidence=np.array([0.9, 0.6, 0.99, 0.55, 0.8, 0.7]),
        truth=np.array([0, 0, 1, 1, 1, 0]),
    )
    chosen = pick(view, 2)
    assert {key: value.tolist() for key, value in chosen.items()} == {
        "right": [2, 0], "wrong": [1, 3], "uncertain": [3, 1],
    }  # fmt: skip
    unlabelled = pick(HeadView(view.probabilities, view.predicted, view.confidence, None), 1)
    assert {key: value.tolist() for key, value in unlabelled.items()} == {"right": [2], "uncertain": [3]}


@pytest.fixture(scope="module")
def explained_group(synth_small, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("explain")
    config = tiny_config(synth_small, tmp_path, "model.head=multi", "train.epochs=2", "name=ex")
    return cross_validate(config, runs_dir=tmp_path / "runs").folder


def test_explain_draws_every_head_on_its_out_of_fold_photos(explained_group, synth_small, tmp_path, capsys):
    code, out, err = run_cli(
        "explain", str(explained_group), "--images", "3", "--measure", "50", "--out", str(tmp_path / "x"), "-q",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    for head in ("mask", "gender", "age"):
        assert (tmp_path / "x" / f"{head}.png").stat().st_size > 0 and f"{head}.png: {head} head" in out
    table = pd.read_csv(tmp_path / "x/explain.csv")
    oof = pd.read_csv(explained_group / "oof_probabilities.csv")
    mask = table[table["head"] == "mask"]
    assert mask.groupby("category")["rank"].max().to_dict() == {"right": 3, "wrong": 3, "uncertain": 3}
    cube = oof[[f"p{k}" for k in range(18)]].to_numpy().reshape(-1, 3, 2, 3).sum(axis=(2, 3))  # mask marginals
    confidence, wrong = cube.max(axis=1), cube.argmax(axis=1) != oof["target"].to_numpy() // 6
    order = np.argsort(-confidence, kind="stable")
    expected = oof["path"].to_numpy()[order[wrong[order]][:3]].tolist()
    assert mask[mask["category"] == "wrong"].sort_values("rank")["path"].tolist() == expected
    shares = pd.read_csv(tmp_path / "x/face_share.csv")
    assert shares[shares["mask_state"] == "all"]["photos"].tolist() == [50, 50, 50]
    assert shares["face_share"].between(0, 1).all() and "share of each map inside the true face box" in out
    assert "maps at backbone.layer4" in out


def test_explain_refuses_test_photos_that_were_not_predicted(explained_group, capsys):
    code, _, err = run_cli("explain", str(explained_group), "--split", "test", capsys=capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"maskcls: error: {explained_group / 'test_probabilities.csv'}: not found; run `maskcls predict "
        f"{explained_group} --data DATA` first"
    ]


def test_explain_from_python_returns_what_it_wrote(explained_group, tmp_path):
    import maskcls

    found = maskcls.explain(explained_group, images=2, out=tmp_path / "py", measure=20)
    assert sorted(found.sheets) == ["age", "gender", "mask"] and all(path.exists() for path in found.sheets.values())
    assert found.layer == "backbone.layer4" and found.table == tmp_path / "py" / "explain.csv"
    assert found.face_share["photos"].tolist()[:1] == [20]
