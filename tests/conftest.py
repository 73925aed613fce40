"""Shared fixtures: tiny datasets in the competition layout, made by the tests themselves."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from maskcls.labels import MASK_STEMS
from maskcls.synth.generate import SynthSpec, generate_dataset


def write_image(path: Path, colour=(120, 90, 60), size=(12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
    return path


def make_layout(root: Path, profiles: list[str], eval_names: list[str] = ("a" * 40 + ".jpg",)) -> Path:
    """A minimal, valid competition folder: tiny images, one row per profile."""
    rows = []
    for folder in profiles:
        person_id, gender, race, age = folder.split("_")
        rows.append({"id": person_id, "gender": gender, "race": race, "age": age, "path": folder})
        for stem in MASK_STEMS:
            write_image(root / "train/images" / folder / f"{stem}.jpg")
    write_csv(root / "train/train.csv", ["id", "gender", "race", "age", "path"], rows)
    for name in eval_names:
        write_image(root / "eval/images" / name)
    write_csv(root / "eval/info.csv", ["ImageID", "ans"], [{"ImageID": n, "ans": 0} for n in eval_names])
    return root


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "data", ["000001_female_Asian_45", "000002_male_Asian_22"])


@pytest.fixture(scope="session")
def synth_quirks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "quirks"
    generate_dataset(root, SynthSpec(people=14, eval_people=4, seed=3, quirks=True), workers=1)
    return root


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "small"
    generate_dataset(root, SynthSpec(people=24, eval_people=8, seed=5), workers=2)
    return root


def pytest_sessionfinish(session, exitstatus):
    """With MASKCLS_FORBID_SKIPS=1 (CI sets it) a skipped test fails the run: a check that was
    meant to run and did not is not a pass."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("MASKCLS_FORBID_SKIPS") == "1" and exitstatus == 0:
        names = ", ".join(report.nodeid for report in skipped[:5])
        reporter.write_line(f"MASKCLS_FORBID_SKIPS=1: {len(skipped)} test(s) skipped: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def tiny_config(data, tmp_path, *overrides):
    """A recipe that trains in seconds on a tiny synthetic set: 1 epoch of a tiny network at 24x32."""
    from maskcls.config import load_config

    return load_config(
        None,
        [
            f"data.root={data}", "model.name=test_resnet", "train.epochs=1", "train.image_size=[24,32]",
            f"train.cache_dir={tmp_path / 'cache'}", "train.batch_size=32", "train.folds=3", "name=cvt",
            *overrides,
        ],
    )  # fmt: skip
