import os
import subprocess
import sys

import pytest
import timm
import torch

from maskcls.errors import UserError
from maskcls.labels import encode_class
from maskcls.models import create_model, head_targets


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
    with pytest.raises(UserError, match="does not fit this backbone"):
        create_model("test_resnet", weights=tmp_path / "other.pt")
    with pytest.raises(UserError, match="weights file not found"):
        create_model("test_resnet", weights=tmp_path / "none.pt")


def test_unknown_model_lists_close_names():
    with pytest.raises(UserError, match=r"unknown timm model 'resnet81'.*resnet18"):
        create_model("resnet81")


def test_pretrained_offline_fails_with_a_message_saying_what_to_do():
    code = "from maskcls.cli import main; from maskcls.models import create_model\n" \
           "from maskcls.errors import UserError\n" \
           "try:\n    create_model('test_resnet', pretrained=True)\n" \
           "except UserError as e:\n    print(e)\n"  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "cannot download pretrained weights for 'test_resnet'" in result.stdout
    assert "model.weights=FILE" in result.stdout
