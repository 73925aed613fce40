import numpy as np
import pytest
import torch
from torch import nn

from maskcls.errors import UserError
from maskcls.metrics import accuracy
from maskcls.training.engine import StepSettings, batches, evaluate, train_one_epoch
from maskcls.training.losses import HeadLoss
from maskcls.training.models import FaceAttributeModel
from maskcls.training.optim import create_optimizer, create_scheduler


def toy_data(count=256, seed=0):
    """Images whose colour tells the class: learnable in a few epochs by a tiny CNN."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 18, count)
    palette = rng.integers(0, 256, (18, 3))
    images = np.clip(palette[labels][:, None, None, :] + rng.normal(0, 12, (count, 16, 12, 3)), 0, 255)
    return images.astype(np.uint8), labels


def tiny_model(head="single"):
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return FaceAttributeModel(backbone, 16, head)


def fit_toy(head="single", epochs=12, settings=None, mixing="none", augmentation="none"):
    torch.manual_seed(0)
    images, labels = toy_data()
    model = tiny_model(head)
    criterion = HeadLoss([("cross_entropy", 1.0, {})], head)
    optimizer = create_optimizer("adamw", model.parameters(), lr=0.03)
    scheduler = create_scheduler("cosine", optimizer, epochs=epochs, steps_per_epoch=8)
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    settings = settings or StepSettings()
    losses = []
    for _ in range(epochs):
        result = train_one_epoch(
            model, batches(images, labels, np.arange(192), 24, generator), criterion=criterion, optimizer=optimizer,
            scheduler=scheduler, settings=settings, augmentation=augmentation, mixing=mixing, mixing_probability=0.5,
            generator=generator, rng=rng,
        )  # fmt: skip
        losses.append(result.loss)
    loss, probabilities, targets = evaluate(
        model, batches(images, labels, np.arange(192, 256), 32), criterion, settings
    )
    return losses, loss, probabilities, targets


@pytest.mark.parametrize("head", ["single", "multi"])
def test_training_learns_and_evaluation_reports_probabilities(head):
    losses, valid_loss, probabilities, targets = fit_toy(head)
    assert losses[-1] < losses[0] * 0.5
    assert probabilities.shape == (64, 18) and np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert accuracy(targets, probabilities.argmax(1)) > 0.5  # chance is 1/18
    assert np.isfinite(valid_loss)


def test_bf16_channels_last_mixing_and_augmentation_run_on_cpu():
    settings = StepSettings(amp_dtype=torch.bfloat16, channels_last=True, grad_clip=1.0)
    losses, _, probabilities, _ = fit_toy(epochs=3, settings=settings, mixing="cutmix_vertical", augmentation="seed")
    assert all(np.isfinite(losses)) and probabilities.shape == (64, 18)


def test_nan_loss_stops_with_a_clear_message():
    images, labels = toy_data(32)
    model = tiny_model()
    optimizer = create_optimizer("sgd", model.parameters(), lr=0.1)
    scheduler = create_scheduler("none", optimizer, epochs=1, steps_per_epoch=1)
    with pytest.raises(UserError, match="loss became nan"):
        train_one_epoch(
            model, batches(images, labels, np.arange(32), 8), criterion=lambda logits, t: logits.sum() * float("nan"),
            optimizer=optimizer, scheduler=scheduler, settings=StepSettings(), generator=torch.Generator(),
            rng=np.random.default_rng(0),
        )  # fmt: skip


def test_batches_cover_indices_and_balance_classes():
    images, labels = toy_data(100)
    seen = np.concatenate([b[1].numpy() for b in batches(images, labels, np.arange(100), 7)])
    assert np.array_equal(seen, labels)
    skewed = np.array([0] * 90 + [1] * 10)
    weights = 1.0 / np.bincount(skewed)[skewed]
    drawn = np.concatenate(
        [b[1].numpy() for b in batches(images, skewed, np.arange(100), 10, torch.Generator().manual_seed(0), weights)]
    )
    assert 0.3 < drawn.mean() < 0.7


def test_forward_only_batches_on_the_cpu_hold_a_bounded_number_of_pixels():
    from maskcls.training.engine import inference_batch

    assert [inference_batch(128, size, "cpu") for size in [(96, 128), (192, 256), (288, 384), (384, 512)]] == [
        128, 32, 14, 8,
    ]  # fmt: skip
    assert inference_batch(4, (384, 512), "cpu") == 4 and inference_batch(128, (2000, 2000), "cpu") == 1
    assert inference_batch(128, (384, 512), "meta") == 128  # a GPU's memory is not the process's: as asked


def test_accumulated_parts_give_the_whole_batch_step():
    """A batch in 3 parts whose gradients add up moves the weights as the whole batch does (a
    model without BatchNorm, a loss that is a mean over images, cutmix on every batch)."""

    def one_epoch(accumulate: int):
        torch.manual_seed(0)
        images, labels = toy_data()
        model = tiny_model("multi")
        optimizer = create_optimizer("adamw", model.parameters(), lr=0.03)
        scheduler = create_scheduler("cosine", optimizer, epochs=1, steps_per_epoch=4)
        result = train_one_epoch(
            model, batches(images, labels, np.arange(96), 24, torch.Generator().manual_seed(0)),
            criterion=HeadLoss([("cross_entropy", 1.0, {})], "multi"), optimizer=optimizer, scheduler=scheduler,
            settings=StepSettings(grad_clip=1.0),
            augmentation="seed", mixing="cutmix_vertical", mixing_probability=1.0,
            generator=torch.Generator().manual_seed(1), rng=np.random.default_rng(0), accumulate=accumulate,
        )  # fmt: skip
        return result, [parameter.detach().clone() for parameter in model.parameters()]

    (whole, whole_weights), (parts, part_weights) = one_epoch(1), one_epoch(3)
    assert parts.loss == pytest.approx(whole.loss, rel=1e-5) and parts.images == whole.images == 96
    assert (parts.predictions == whole.predictions).all()
    for expected, given in zip(whole_weights, part_weights, strict=True):
        assert torch.allclose(expected, given, atol=1e-5)
