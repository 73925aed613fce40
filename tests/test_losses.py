import math

import pytest
import torch
from torch.nn import functional as F

from maskcls.config import Config
from maskcls.errors import UserError
from maskcls.training.losses import HeadLoss, create_loss, head_class_weights
from maskcls.training.train import check_parts

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
TARGET = torch.tensor([0, 2, 1])


def test_cross_entropy_matches_torch():
    assert create_loss("cross_entropy")(LOGITS, TARGET).item() == pytest.approx(F.cross_entropy(LOGITS, TARGET).item())


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_examples():
    ce = F.cross_entropy(LOGITS, TARGET).item()
    assert create_loss("focal", gamma=0.0)(LOGITS, TARGET).item() == pytest.approx(ce)
    # one example by hand: p_t = 0.9 -> -(0.1 ** 2) * log 0.9
    logits = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    expected = -(0.1**2) * math.log(0.9)
    assert create_loss("focal", gamma=2.0)(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_by_hand_and_against_torch():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    expected = -(0.9 * math.log(0.7) + 0.05 * math.log(0.2) + 0.05 * math.log(0.1))
    assert create_loss("label_smoothing", smoothing=0.1)(logits, torch.tensor([0])).item() == pytest.approx(expected)
    assert create_loss("label_smoothing", smoothing=0.0)(LOGITS, TARGET).item() == pytest.approx(
        F.cross_entropy(LOGITS, TARGET).item()
    )


def test_soft_f1_is_zero_for_confident_right_answers_and_one_for_wrong():
    perfect = F.one_hot(TARGET, 3).float() * 50
    assert create_loss("f1")(perfect, TARGET).item() == pytest.approx(0.0, abs=1e-4)
    wrong = F.one_hot((TARGET + 1) % 3, 3).float() * 50
    assert create_loss("f1")(wrong, TARGET).item() == pytest.approx(1.0, abs=1e-4)


def test_symmetric_ce_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    reverse = -(0.2 * math.log(1e-4) + 0.1 * math.log(1e-4))  # log 1 = 0 on the target
    expected = 0.1 * -math.log(0.7) + 1.0 * reverse
    assert create_loss("symmetric_ce")(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)


def test_weighted_sum_and_gradients():
    combined = create_loss([("cross_entropy", 1.0, {}), ("f1", 0.5, {})])
    logits = LOGITS.clone().requires_grad_(True)
    value = combined(logits, TARGET)
    expected = F.cross_entropy(LOGITS, TARGET) + 0.5 * create_loss("f1")(LOGITS, TARGET)
    assert value.item() == pytest.approx(expected.item())
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_unknown_loss_suggests():
    with pytest.raises(UserError, match=r"unknown loss 'focall' \(did you mean 'focal'\?\)"):
        create_loss("focall")


CLASS_WEIGHTS = [float(k + 1) for k in range(18)]  # class k weighs k + 1


def test_class_weights_fit_each_head_of_a_multi_head_model():
    fitted = head_class_weights(CLASS_WEIGHTS, "multi")
    # mask m: classes 6m..6m+5, mean weight 6m + 3.5; gender g: classes with (k // 3) % 2 == g
    assert fitted["mask"] == [3.5, 9.5, 15.5]
    assert fitted["gender"] == [8.0, 11.0]
    assert fitted["age"] == [8.5, 9.5, 10.5]
    assert head_class_weights({"age": [1, 2, 4]}, "multi") == {"age": [1.0, 2.0, 4.0]}
    assert head_class_weights(CLASS_WEIGHTS, "single") == {"class": CLASS_WEIGHTS}


@pytest.mark.parametrize("loss_name", ["cross_entropy", "focal"])
def test_multi_head_loss_with_eighteen_class_weights(loss_name):
    logits = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([0, 7, 17, 11, 3, 14])
    loss = HeadLoss([(loss_name, 1.0, {"weight": CLASS_WEIGHTS})], "multi")
    mask, gender, age = classes // 6, classes // 3 % 2, classes % 3
    expected = sum(
        create_loss(loss_name, weight=weights)(part, target).item()
        for part, target, weights in (
            (logits[:, :3], mask, [3.5, 9.5, 15.5]),
            (logits[:, 3:5], gender, [8.0, 11.0]),
            (logits[:, 5:], age, [8.5, 9.5, 10.5]),
        )
    )
    assert loss(logits, classes).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("head", "weight", "message"),
    [
        ("single", [1.0, 2.0, 3.0], r"loss\[0\]\.options\.weight: expected 18 class weights, got 3"),
        ("multi", [1.0] * 17, r"loss\[0\]\.options\.weight: expected 18 class weights, got 17"),
        ("multi", {"mask": [1.0, 2.0]}, r"loss\[0\]\.options\.weight\.mask: expected 3 class weights, got 2"),
        ("multi", {"gendr": [1.0, 2.0]}, r"loss\[0\]\.options\.weight: unknown head 'gendr'"),
        ("single", {"mask": [1, 1, 1]}, r"a mapping per head needs model\.head=multi"),
        ("single", [-1.0] * 18, r"must be finite and >= 0"),
    ],
)
def test_wrong_class_weights_are_refused_before_anything_is_built(head, weight, message):
    config = Config.model_validate(
        {"model": {"name": "resnet10t", "head": head}, "loss": [{"name": "focal", "options": {"weight": weight}}]}
    )
    with pytest.raises(UserError, match=message):
        check_parts(config)
