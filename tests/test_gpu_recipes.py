"""The GPU recipes (configs/gpu-*.yaml), dry-run on the CPU at their real input size: a handful of
training steps on a few full-size photos, a checkpoint, and a flip-TTA prediction from it, so that
their config, memory path and checkpoint format are exercised where no GPU is."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskcls.config import load_config
from maskcls.inference.predict import predict_dataset
from maskcls.labels import AGE_ESTIMATE_COLUMN, PROBABILITY_COLUMNS
from maskcls.training.train import fit
from tests.helpers import make_layout

RECIPES = sorted((Path(__file__).parents[1] / "configs").glob("gpu-*.yaml"))
PEOPLE = ["000001_female_Asian_45", "000002_male_Asian_22", "000003_female_Asian_64", "000004_male_Asian_31"]


@pytest.fixture(scope="module")
def full_size(tmp_path_factory) -> Path:
    """Four people and two test photos at the competition's 384x512, with textures."""
    root = make_layout(tmp_path_factory.mktemp("gpu") / "data", PEOPLE, ["a" * 40 + ".jpg", "b" * 40 + ".jpg"])
    rng = np.random.default_rng(0)
    for path in sorted(root.rglob("*.jpg")):
        Image.fromarray(rng.integers(0, 256, (512, 384, 3), dtype=np.uint8)).save(path, quality=90)
    return root


def test_there_are_gpu_recipes():
    assert [recipe.stem for recipe in RECIPES] == ["gpu-efficientnet-b3", "gpu-resnet50"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_a_gpu_recipe_trains_and_predicts_at_its_real_size_on_the_cpu(recipe, full_size, tmp_path):
    shipped = load_config(recipe)
    config = load_config(
        recipe,
        [
            f"data.root={full_size}", "model.pretrained=false", "train.epochs=1", "train.batch_size=4",
            "train.limit_batches=2", "train.folds=2", f"train.cache_dir={tmp_path / 'cache'}", "train.device=cpu",
        ],
    )  # fmt: skip
    run = fit(config, runs_dir=tmp_path / "runs").folder
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert {int(state["step"]) for state in checkpoint["optimizer"]["state"].values()} == {2}  # limit_batches
    saved = checkpoint["config"]
    assert saved["train"]["image_size"] == list(shipped.train.image_size)  # the real size, not a small stand-in
    assert saved["model"]["name"] == shipped.model.name and saved["model"]["age_head"] == "distribution"
    assert (saved["train"]["amp"], saved["train"]["channels_last"]) == (shipped.train.amp, True)
    cache = next((tmp_path / "cache").glob("images-*.npy"))
    width, height = shipped.train.image_size
    assert np.load(cache, mmap_mode="r").shape == (28, height, width, 3)
    prediction = predict_dataset([run], full_size, tta="flip", backend="torch", cache_dir=tmp_path / "cache")
    table = prediction.table
    assert len(table) == 2 and np.allclose(table[PROBABILITY_COLUMNS].sum(axis=1), 1, atol=1e-5)
    assert table[AGE_ESTIMATE_COLUMN].between(15, 80).all()
