import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from maskcls.metrics import accuracy, confusion, macro_f1, summary
from maskcls.training.losses import create_loss
from maskcls.training.mixing import cutmix, cutmix_vertical, maybe_mix, mixed_loss, mixup


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 18, 300)
    predicted = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 14, 300))  # some classes never predicted
    expected = f1_score(truth, predicted, average="macro", labels=range(18), zero_division=0)
    assert macro_f1(truth, predicted) == pytest.approx(expected)
    assert accuracy(truth, predicted) == pytest.approx((truth == predicted).mean())


def test_confusion_rows_are_truth_and_columns_predictions():
    matrix = confusion(np.array([0, 0, 2, 17]), np.array([1, 0, 2, 3]))
    expected = np.zeros((18, 18), dtype=int)
    expected[0, 1] = expected[0, 0] = expected[2, 2] = expected[17, 3] = 1
    assert np.array_equal(matrix, expected)


def test_summary_per_attribute():
    truth = np.array([0, 7, 17, 11])
    result = summary(truth, truth)
    assert result["f1_mask"] == result["f1_gender"] == result["accuracy"] == 1.0
    assert result["f1"] == pytest.approx(4 / 18)  # 14 classes absent count as 0


def images(count=8, height=4, width=10):
    return torch.arange(count).float().view(count, 1, 1, 1).expand(count, 3, height, width).clone()


def test_cutmix_vertical_pastes_a_full_height_strip_and_weights_like_the_seed():
    batch, targets = images(), torch.arange(8)
    mixed = cutmix_vertical(batch, targets, np.random.default_rng(3))
    columns_from_other = (mixed.images[:, 0, 0, :] != batch[:, 0, 0, :]).any(dim=0)
    strip = torch.nonzero(columns_from_other).flatten()
    assert (mixed.images[:, :, 0, :] == mixed.images[:, :, -1, :]).all()  # full height
    if len(strip):
        assert (strip.diff() == 1).all()  # one contiguous strip
    assert int(10 * mixed.weight_a) >= len(strip)  # cut width = int(W * r), weight r on a
    for k in range(8):
        source = mixed.targets_b[k]
        assert (mixed.images[k, :, :, strip] == source).all()


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_vertical_strip_and_weights_are_exactly_the_seeds(seed):
    """Same draws as the retrospective: r ~ Beta(1, 1), a strip int(W * r) wide from the shuffled
    batch, weight r on the batch's own targets and 1 - r on the pasted ones."""
    batch, targets = images(width=40), torch.arange(8) * 10
    mixed = cutmix_vertical(batch, targets, np.random.default_rng(seed))
    draws = np.random.default_rng(seed)
    ratio = draws.beta(1.0, 1.0)
    cut = int(40 * ratio)
    start = int(draws.integers(0, 40 - cut + 1))
    order = torch.from_numpy(draws.permutation(8))
    assert mixed.weight_a == ratio
    assert torch.equal(mixed.targets_a, targets) and torch.equal(mixed.targets_b, targets[order])
    expected = batch.clone()
    expected[:, :, :, start : start + cut] = batch[order][:, :, :, start : start + cut]
    assert torch.equal(mixed.images, expected)
    logits = torch.randn(8, 80)
    criterion = create_loss("cross_entropy")
    expected_loss = ratio * criterion(logits, targets) + (1 - ratio) * criterion(logits, targets[order])
    assert mixed_loss(criterion, logits, mixed).item() == pytest.approx(expected_loss.item(), rel=1e-6)


def test_cutmix_box_weight_is_the_share_left():
    batch, targets = images(height=20, width=20), torch.arange(8)
    mixed = cutmix(batch, targets, np.random.default_rng(0))
    changed = (mixed.images[:, 0] != batch[:, 0]).float()
    moved = mixed.targets_a != mixed.targets_b
    share = changed[moved].mean(dim=(1, 2))
    assert torch.allclose(share, torch.full_like(share, 1 - mixed.weight_a))


def test_mixup_and_mixed_loss():
    batch, targets = images(), torch.arange(8)
    mixed = mixup(batch, targets, np.random.default_rng(1))
    partner = batch[mixed.targets_b]  # targets are the image indices here
    assert torch.allclose(mixed.images, mixed.weight_a * batch + (1 - mixed.weight_a) * partner)
    logits = torch.randn(8, 8)
    criterion = create_loss("cross_entropy")
    loss = mixed_loss(criterion, logits, mixed)
    manual = mixed.weight_a * criterion(logits, targets) + (1 - mixed.weight_a) * criterion(logits, mixed.targets_b)
    assert loss.item() == pytest.approx(manual.item())


def test_probability_zero_never_mixes_and_one_always_does():
    rng = np.random.default_rng(0)
    batch, targets = images(), torch.arange(8)
    assert all(maybe_mix("cutmix_vertical", 0.0, batch, targets, rng) is None for _ in range(20))
    assert all(maybe_mix("mixup", 1.0, batch, targets, rng) is not None for _ in range(20))
    with pytest.raises(ValueError, match="known"):
        maybe_mix("cutout", 1.0, batch, targets, rng)
