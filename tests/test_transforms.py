import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from maskcls.choices import AUGMENTATIONS
from maskcls.data.transforms import apply_jitter, augment, channel_stats, normalize, to_float


def batch(count=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 16, 12, 3), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("name", "torchvision_op"),
    [("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
     ("saturation", TF.adjust_saturation), ("hue", TF.adjust_hue)],
)  # fmt: skip
def test_batched_jitters_equal_torchvision_per_image(name, torchvision_op):
    images = to_float(batch())
    factors = torch.tensor([0.2, 0.7, 1.0, 1.9, 3.0, 2.5]) if name != "hue" else torch.linspace(-0.3, 0.3, 6)
    ours = apply_jitter(images, name, factors)
    for image, factor, result in zip(images, factors, ours, strict=True):
        assert torch.allclose(result, torchvision_op(image, float(factor)), atol=1e-5)


def test_seed_preset_is_per_image_random_and_reproducible():
    images = to_float(batch(32))
    first = augment(images, "seed", torch.Generator().manual_seed(1))
    again = augment(images, "seed", torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    changed = [(first[k] - images[k]).abs().max() > 1e-6 for k in range(32)]
    assert sum(changed) >= 24  # nearly every image gets a jitter (factor 1 is rare)
    assert first.min() >= 0 and first.max() <= 1 and first.shape == images.shape


def test_none_leaves_images_alone_and_strong_moves_pixels():
    images = to_float(batch())
    assert torch.equal(augment(images, "none", torch.Generator()), images)
    strong = augment(images, "strong", torch.Generator().manual_seed(0))
    assert strong.shape == images.shape and not torch.allclose(strong, images)
    with pytest.raises(ValueError, match="known: none, flip, light, seed, strong"):
        augment(images, "heavy", torch.Generator())


def test_flip_is_a_mirror():
    images = to_float(batch(64))
    generator = torch.Generator().manual_seed(0)
    from maskcls.data.transforms import random_flip

    flipped = random_flip(images, generator)
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True)]
    same = [torch.equal(f, i) for f, i in zip(flipped, images, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and 16 < sum(mirrored) < 48


def test_channel_stats_and_normalize():
    images = np.random.default_rng(0).integers(0, 256, (50, 8, 6, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk_bytes=7 * 8 * 6 * 3)  # 7 images a chunk
    reference = images.reshape(-1, 3) / 255
    assert np.allclose(mean, reference.mean(0), atol=1e-6) and np.allclose(std, reference.std(0), atol=1e-6)
    rows = np.array([3, 4, 10, 11, 12, 40])  # a subset, read in chunks of 4 images
    some = images[rows].reshape(-1, 3) / 255
    assert channel_stats(images, rows, chunk_bytes=4 * 8 * 6 * 3) == (
        some.mean(0).round(6).tolist(),
        some.std(0).round(6).tolist(),
    )
    white = np.full((3, 2, 2, 3), 255, dtype=np.uint8)  # the largest values: the integer sums do not wrap
    assert channel_stats(white, chunk_bytes=1) == ([1.0, 1.0, 1.0], [1e-06, 1e-06, 1e-06])
    normalized = normalize(to_float(torch.from_numpy(images)), mean, std)
    assert normalized.mean(dim=(0, 2, 3)).abs().max() < 1e-4


def test_seed_jitter_is_one_of_the_four_with_the_retrospectives_ranges():
    """RandomChoice of ColorJitter brightness (0.2, 3) | contrast (0.2, 3) | saturation (0.2, 3) |
    hue (-0.3, 0.3), one choice and one uniform factor per image: replayed from the same draws."""
    from maskcls.data.transforms import random_color_jitter

    images = to_float(batch(40))
    got = random_color_jitter(images, torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)
    choice = torch.randint(0, 4, (40,), generator=draws)
    for index, (name, low, high) in enumerate(
        [("brightness", 0.2, 3.0), ("contrast", 0.2, 3.0), ("saturation", 0.2, 3.0), ("hue", -0.3, 0.3)]
    ):
        rows = torch.nonzero(choice == index).flatten()
        factor = low + (high - low) * torch.rand(len(rows), generator=draws)
        assert torch.allclose(got[rows], apply_jitter(images[rows], name, factor), atol=1e-6), name


def test_light_is_seeds_jitter_over_narrow_ranges_then_the_flip_and_flip_is_the_flip_alone():
    """light: brightness, contrast, saturation 0.8-1.25 | hue -0.03..0.03, one per image, then a
    mirror with p=0.5; flip: only that mirror. Replayed from the same draws."""
    images = to_float(batch(40))
    got = augment(images, "light", torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)
    choice = torch.randint(0, 4, (40,), generator=draws)
    expected = images.clone()
    for index, (name, low, high) in enumerate(
        [("brightness", 0.8, 1.25), ("contrast", 0.8, 1.25), ("saturation", 0.8, 1.25), ("hue", -0.03, 0.03)]
    ):
        rows = torch.nonzero(choice == index).flatten()
        factor = low + (high - low) * torch.rand(len(rows), generator=draws)
        expected[rows] = apply_jitter(images[rows], name, factor)
    mirror = torch.rand(40, generator=draws) < 0.5
    expected = torch.where(mirror.view(-1, 1, 1, 1), expected.flip(-1), expected)
    assert torch.allclose(got, expected, atol=1e-6)
    mirror = torch.rand(40, generator=torch.Generator().manual_seed(3)) < 0.5
    flipped = augment(images, "flip", torch.Generator().manual_seed(3))
    assert torch.equal(flipped, torch.where(mirror.view(-1, 1, 1, 1), images.flip(-1), images))


@pytest.mark.parametrize("preset", AUGMENTATIONS)
def test_augmentation_and_mixing_run_on_the_training_device(preset):
    """On a GPU the batch is augmented where it trains, with draws from the CPU generator: every
    draw must follow the batch to its device. The meta device has no data and, like CUDA, refuses
    a CPU tensor mixed into its arithmetic."""
    from maskcls.training.mixing import maybe_mix

    batch = torch.rand(4, 3, 8, 6, device="meta")
    augmented = augment(batch, preset, torch.Generator().manual_seed(0))
    assert augmented.device.type == "meta" and augmented.shape == batch.shape
    for method in ("cutmix_vertical", "cutmix", "mixup"):
        mixed = maybe_mix(
            method, 1.0, augmented, torch.zeros(4, 2, dtype=torch.long, device="meta"), np.random.default_rng(0)
        )
        assert mixed.images.device.type == "meta"
