import csv
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.data.layout import read_dataset
from maskcls.errors import UserError
from maskcls.evaluation.oracle import MASKS_PER_PERSON, oracle_predictions, oracle_score
from maskcls.labels import age_groups, encode_classes
from maskcls.metrics import macro_f1
from maskcls.synth.generate import GENERATOR_VERSION, SynthSpec, generate_dataset


def file_digest(path):
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_layout_is_the_competitions_and_reads_cleanly(synth_small):
    dataset = read_dataset(synth_small, strict=True, verify_images=True, require_eval=True)
    assert len(dataset.people) == 24 and len(dataset.train) == 24 * 7
    assert len(dataset.eval) == 8 * 7
    assert all(re.fullmatch(r"[0-9a-f]{40}\.jpg", name) for name in dataset.eval["ImageID"])
    assert all(re.fullmatch(r"\d{6}_(male|female)_Asian_\d+", p) for p in dataset.people["profile"])
    with Image.open(dataset.absolute(dataset.train["path"][0])) as image:
        assert image.size == (384, 512)


def test_truth_matches_info_csv_and_splits_people(synth_small):
    info = pd.read_csv(synth_small / "eval/info.csv")
    truth = pd.read_csv(synth_small / "truth/eval.csv")
    assert list(info.columns) == ["ImageID", "ans"] and (info["ans"] == 0).all()
    assert list(truth["ImageID"]) == list(info["ImageID"])
    expected = encode_classes(truth["mask"], truth["gender"], age_groups(truth["age"].to_numpy()))
    assert (truth["ans"] == expected).all()
    halves = truth.groupby("person")["half"].nunique()
    assert (halves == 1).all() and set(truth["half"]) == {"public", "private"}
    assert truth.groupby("person").size().eq(7).all()
    boxes = pd.read_csv(synth_small / "truth/boxes.csv")
    assert len(boxes) == (24 + 8) * 7
    assert ((boxes["x1"] > boxes["x0"]) & (boxes["y1"] > boxes["y0"])).all()


def test_planted_corruptions_are_recorded(synth_small):
    corruptions = pd.read_csv(synth_small / "truth/corruptions.csv")
    assert set(corruptions["kind"]) <= {"gender", "swap_incorrect_normal"}
    assert len(corruptions) >= 2
    train = pd.read_csv(synth_small / "train/train.csv")
    for row in corruptions[corruptions["kind"] == "gender"].itertuples():
        assert train.set_index("path").loc[row.profile, "gender"] == row.given != row.true


def test_same_seed_same_dataset_whatever_the_workers(tmp_path):
    spec = SynthSpec(people=3, eval_people=2, seed=11)
    one = generate_dataset(tmp_path / "one", spec, workers=1).root
    two = generate_dataset(tmp_path / "two", spec, workers=2).root
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all(file_digest(one / f) == file_digest(two / f) for f in files)
    other = generate_dataset(tmp_path / "other", SynthSpec(people=3, eval_people=2, seed=12), workers=1).root
    assert (one / "train/train.csv").read_text() != (other / "train/train.csv").read_text()


def test_setting_per_photo_changes_only_the_backdrop_and_the_clothes(tmp_path):
    """Same people, labels, faces and face boxes; the backdrop's corner shares a person's colour
    across their photos only when the setting is drawn per person."""
    sets = {
        setting: generate_dataset(tmp_path / setting, SynthSpec(people=3, eval_people=1, seed=11, setting=setting))
        for setting in ("person", "photo")
    }
    person, photo = sets["person"].root, sets["photo"].root
    for same in ("train/train.csv", "truth/eval.csv", "truth/boxes.csv", "truth/people.csv"):
        assert (person / same).read_text() == (photo / same).read_text(), same

    def corner_spread(root) -> float:  # per person: how far apart the top-left corners of the photos are
        spreads = []
        for folder in sorted((root / "train/images").iterdir()):
            corners = [np.asarray(Image.open(f))[:12, :12].reshape(-1, 3).mean(axis=0) for f in folder.iterdir()]
            shares = np.array(corners) / np.sum(corners, axis=1, keepdims=True)  # the colour, not its brightness
            spreads.append(np.ptp(shares, axis=0).max())
        return float(np.mean(spreads))

    spread = corner_spread(photo), corner_spread(person)
    assert spread[0] > 2 * spread[1], spread
    assert json.loads((photo / "truth/meta.json").read_text())["spec"]["setting"] == "photo"
    with pytest.raises(UserError, match="--setting must be one of person, photo, got 'room'"):
        generate_dataset(tmp_path / "x", SynthSpec(people=2, setting="room"))


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        generate_dataset(out, SynthSpec(people=2, eval_people=1))
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="difficulty"):
        generate_dataset(tmp_path / "x", SynthSpec(people=2, difficulty=2))
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_quirks_are_reported_exactly(synth_quirks):
    planted = json.loads((synth_quirks / "truth/meta.json").read_text())["quirks"]
    dataset = read_dataset(synth_quirks, verify_images=True)
    counts = {}
    for problem in dataset.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    assert counts == planted["problems"]
    assert dict(dataset.ignored) == planted["ignored"]
    assert len(dataset.people) == planted["train_people_readable"]
    assert len(dataset.train) == planted["train_images_readable"]
    assert len(dataset.eval) == planted["eval_images_readable"]
    assert (dataset.people["person_id"] == planted["duplicate_id"]).sum() == 2
    assert planted["non_numeric_id"] in set(dataset.people["person_id"])
    extensions = {p.rsplit(".", 1)[1] for p in dataset.train["path"]}
    assert {"jpg", "png", "jpeg", "JPG"} <= extensions


@pytest.mark.slow
def test_distribution_is_like_the_competitions(tmp_path):
    root = generate_dataset(tmp_path / "d", SynthSpec(people=120, eval_people=1, seed=0)).root
    with (root / "train/train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    female = np.mean([row["gender"] == "female" for row in rows])
    old = np.mean([int(row["age"]) >= 60 for row in rows])
    assert 0.45 < female < 0.75
    assert 0.0 < old < 0.2


def test_people_file_holds_every_persons_labels_and_latent_cues(synth_small):
    people = pd.read_csv(synth_small / "truth/people.csv")
    assert list(people.columns) == ["split", "person", "gender", "age", "apparent_age", "masculinity"]
    assert people["split"].value_counts().to_dict() == {"train": 24, "eval": 8}
    truth = pd.read_csv(synth_small / "truth/eval.csv").drop_duplicates("person").set_index("person")
    cues = people[people["split"] == "eval"].set_index("person").loc[truth.index]
    assert list(cues["gender"]) == list(truth["gender"]) and list(cues["age"]) == list(truth["age"])
    train = pd.read_csv(synth_small / "train/train.csv")
    assert sorted(train["path"]) == sorted(people.loc[people["split"] == "train", "person"])


def test_oracle_reads_the_cues_with_borders_fitted_on_training_people(synth_small):
    truth, predicted, halves, borders = oracle_predictions(synth_small / "truth")
    answers = pd.read_csv(synth_small / "truth/eval.csv")
    cues = pd.read_csv(synth_small / "truth/people.csv").set_index("person").loc[answers["person"]]
    gender = np.where(cues["masculinity"].to_numpy() > 0, 0, 1)  # male 0, female 1
    age = np.digitize(cues["apparent_age"].to_numpy(), [border - 0.5 for border in borders])  # whole years
    assert list(predicted) == list(encode_classes(answers["mask"].to_numpy(), gender, age))
    assert list(truth) == list(answers["ans"]) and list(halves) == list(answers["half"])
    train = pd.read_csv(synth_small / "truth/people.csv").query("split == 'train'")
    masks = np.tile(MASKS_PER_PERSON, len(train))

    def train_f1(low, high):
        genders = np.repeat(np.where(train["masculinity"].to_numpy() > 0, 0, 1), 7)
        wanted = encode_classes(
            masks, np.repeat(train["gender"].to_numpy(), 7), np.repeat(age_groups(train["age"].to_numpy()), 7)
        )
        guessed = encode_classes(
            masks, genders, np.digitize(np.repeat(train["apparent_age"].to_numpy(), 7), [low - 0.5, high - 0.5])
        )
        return macro_f1(wanted, guessed)

    assert train_f1(*borders) >= max(train_f1(30, 60), train_f1(29.5, 58), train_f1(31, 61))
    score = oracle_score(synth_small / "truth")
    assert score["all"]["f1"] == pytest.approx(macro_f1(truth, predicted)) and score["all"]["f1_mask"] == 1.0
    assert score["all"]["f1_gender"] == 1.0  # the cue's sign is the gender for all 8 test people of this set
    assert borders == (34.0, 59.5)  # the first best pair of the half-year grid for this seed (whole-year borders)
    assert oracle_score(synth_small / "eval") is None  # answers without people.csv: no oracle


def faces_from_truth(data, out, margin=0.25):
    """A copy of the training folder cut to the true face boxes (as `crop` would, without MTCNN)."""
    (out / "train").mkdir(parents=True)
    (out / "train/train.csv").write_bytes((data / "train/train.csv").read_bytes())
    for row in pd.read_csv(data / "truth/boxes.csv").itertuples():
        if not row.path.startswith("train/"):
            continue
        pad_x, pad_y = margin * (row.x1 - row.x0), margin * (row.y1 - row.y0)
        with Image.open(data / row.path) as image:
            face = image.crop((row.x0 - pad_x, row.y0 - pad_y, row.x1 + pad_x, row.y1 + pad_y)).resize((48, 64))
        (out / row.path).parent.mkdir(parents=True, exist_ok=True)
        face.save(out / row.path, quality=95)
    return out


@pytest.mark.slow
def test_a_tiny_model_learns_mask_and_gender_from_the_pictures(tmp_path):
    """The labels are visible in the photos: a tiny network trained briefly on the faces beats
    chance on mask, gender and age by a wide margin, on people it has not seen (it reaches about
    0.80 / 0.89 / 0.70)."""
    from maskcls.config import load_config
    from maskcls.training.train import fit

    data = generate_dataset(tmp_path / "d", SynthSpec(people=90, eval_people=1, seed=21), workers=2).root
    faces = faces_from_truth(data, tmp_path / "faces")
    config = load_config(
        None,
        [
            f"data.root={faces}", "model.name=resnet10t", "model.head=multi", "train.epochs=12",
            "train.image_size=[48,64]", "train.batch_size=32", "train.folds=3", "optim.lr=3e-3",
            f"train.cache_dir={tmp_path / 'cache'}", "train.augmentation=none", "name=learn",
        ],
    )  # fmt: skip
    result = pd.read_csv(fit(config, runs_dir=tmp_path / "runs").folder / "summary.csv").iloc[-1]
    # the best constant guess scores macro F1 0.29 on mask (3 classes at 5:1:1), about 0.37 on gender
    assert result["valid_f1_mask"] > 0.6, result.to_dict()
    assert result["valid_f1_gender"] > 0.6, result.to_dict()
    assert result["valid_f1_age"] > 0.5, result.to_dict()  # a constant guess: about 0.21


def test_meta_names_the_generator_version(synth_small):
    meta = json.loads((synth_small / "truth/meta.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION == 2
