"""Person-consistent prediction: the identity signal, the clustering, the vote and its check."""

import json

import numpy as np
import pandas as pd
import pytest

from maskcls.data.layout import read_dataset
from maskcls.evaluation.calibrate import AgeBorders, Calibration
from maskcls.inference import people
from maskcls.inference.people import (
    LAYOUT_GRID,
    GroupingCheck,
    check_on_held_out,
    cluster_people,
    colour_layouts,
    group_photos,
    purity,
    vote_in_people,
    vote_outputs,
)
from maskcls.inference.predict import PROBABILITY_COLUMNS, predict_dataset
from maskcls.labels import encode_class
from maskcls.metrics import macro_f1, share_of_resamples_better
from tests.helpers import run_cli


def test_vote_in_people_keeps_each_mask_and_shares_gender_and_age():
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(18), 14)
    clusters = np.repeat([0, 1], 7)
    voted = vote_in_people(probabilities, clusters)
    cube, voted_cube = probabilities.reshape(-1, 3, 2, 3), voted.reshape(-1, 3, 2, 3)
    assert np.allclose(voted.sum(axis=1), 1)
    assert np.allclose(voted_cube.sum(axis=(2, 3)), cube.sum(axis=(2, 3)))  # own mask
    for members in (slice(0, 7), slice(7, 14)):  # every cluster: its mean gender and its mean age
        for axes in ((1, 3), (1, 2)):
            expected = cube[members].sum(axis=axes).mean(axis=0)
            assert np.allclose(voted_cube[members].sum(axis=axes), expected), (members, axes)
    joint = voted_cube[0]  # mask x gender x age: the product of the three, nothing else
    heads = cube[0].sum(axis=(1, 2)), cube[:7].sum(axis=(1, 3)).mean(axis=0), cube[:7].sum(axis=(1, 2)).mean(axis=0)
    assert np.allclose(joint, heads[0][:, None, None] * heads[1][None, :, None] * heads[2][None, None, :])


def test_vote_outputs_votes_the_probabilities_and_gives_every_photo_its_clusters_mean_age_estimate():
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(18), 10)
    estimates = np.array([20.0, 24, 28, 61, 55, 40, 41, 42, 43, 49])
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    voted = vote_outputs(np.column_stack([probabilities, estimates]), clusters)
    assert np.array_equal(voted[:, :18], vote_in_people(probabilities, clusters))
    assert voted[:, 18].tolist() == [24.0] * 3 + [58.0] * 2 + [43.0] * 5
    assert np.array_equal(vote_outputs(probabilities, clusters), vote_in_people(probabilities, clusters))


def test_the_identity_space_is_the_discriminant_analysis_with_shrunk_covariances_spelled_out():
    rng = np.random.default_rng(6)
    persons = np.repeat(np.arange(5), 7)
    noise = np.array([1, 1, 1, 1, 1, 1, 1, 0])  # the last number is the same in every photo
    layouts = rng.normal(0, 1, (5, 8))[persons] * [3, 2, 1, 1, 1, 1, 1, 0] + rng.normal(0, 1, (35, 8)) * noise

    def shrunk(centred, weight):  # (1 - w) S + w mean(diag S) I on standardised columns, scaled back
        spread = np.where(centred.std(axis=0) > 0, centred.std(axis=0), 1.0)
        standardised = centred / spread
        covariance = standardised.T @ standardised / len(centred)
        covariance = (1 - weight) * covariance + weight * np.trace(covariance) / 8 * np.eye(8)
        return spread[:, None] * covariance * spread[None, :]

    means = np.stack([layouts[persons == k].mean(axis=0) for k in range(5)])[persons]
    within = shrunk(layouts - means, people.WITHIN_SHRINKAGE)
    assert np.allclose(people.shrunk_covariance(layouts - means, people.WITHIN_SHRINKAGE), within)
    space = people.IdentitySpace(layouts, persons)
    centred = layouts - layouts.mean(axis=0)
    between = people.shrunk_covariance(centred) - within
    assert space.directions.shape == (8, 4)  # persons - 1
    values = np.einsum("ij,ik,kj->j", space.directions, between, space.directions)  # v' B v with v' W v = 1
    assert np.allclose(np.einsum("ij,ik,kj->j", space.directions, within, space.directions), 1)
    assert np.allclose(between @ space.directions, within @ space.directions * values)
    assert np.all(np.diff(values) <= 0)  # the most telling direction first
    assert np.allclose(space.project(layouts), layouts @ space.directions)


def test_clustering_recovers_well_separated_people_and_purity_counts_them():
    rng = np.random.default_rng(4)
    centres = rng.normal(0, 1, (5, 16))
    embeddings = np.repeat(centres, 7, axis=0) + rng.normal(0, 0.05, (35, 16))
    persons = np.repeat(np.arange(5), 7)
    assert purity(cluster_people(embeddings), persons) == 1.0
    assert purity(np.zeros(35, dtype=int), persons) == pytest.approx(7 / 35)


def test_colour_layout_is_the_grid_of_mean_colours_without_the_cameras_brightness_and_contrast():
    rows, columns = LAYOUT_GRID
    top, bottom = np.array([200, 100, 50]), np.array([100, 60, 30])
    image = np.empty((1, 4 * rows, 4 * columns, 3), dtype=np.uint8)
    image[:, : 2 * rows], image[:, 2 * rows :] = top, bottom  # the upper half of the cells, the lower half
    layout = colour_layouts(image)[0]
    mean, spread = (top + bottom) / 2 / 255, np.sqrt((((top - bottom) / 2 / 255) ** 2).mean())
    cells = layout[:-3].reshape(rows, columns, 3)
    assert np.allclose(cells[: rows // 2], (top / 255 - mean) / spread)
    assert np.allclose(cells[rows // 2 :], (bottom / 255 - mean) / spread)
    assert np.allclose(layout[-3:], mean / spread)
    dimmer = (image * 0.5 + 20).astype(np.uint8)  # exact: a darker, flatter camera
    assert np.allclose(colour_layouts(dimmer)[0][:-3], layout[:-3], atol=1e-6)
    both = np.concatenate([image, dimmer])
    assert np.array_equal(colour_layouts(both, chunk=1), colour_layouts(both))  # read a chunk at a time


def separable_people(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Colour layouts of ``count`` people, 7 photos each, far apart from each other."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (count, 12))
    return np.repeat(centres, 7, axis=0) + rng.normal(0, 0.02, (7 * count, 12)), np.repeat(np.arange(count), 7)


def person_probabilities(persons: np.ndarray, right: float, wrong: float, wrong_photos: int) -> tuple:
    """Targets (mask from the photo, gender and age from the person) and probabilities putting
    ``right`` on the true class, except on the last ``wrong_photos`` of each person, which put
    ``wrong`` on the other gender."""
    targets, rows = [], []
    for index, person in enumerate(persons):
        photo = index % 7
        mask, gender, age = min(photo, 2), person % 2, person % 3
        target, other = encode_class(mask, gender, age), encode_class(mask, 1 - gender, age)
        chosen, strength = (other, wrong) if photo >= 7 - wrong_photos else (target, right)
        row = np.full(18, (1 - strength) / 17)
        row[chosen] = strength
        targets.append(target)
        rows.append(row)
    return np.array(targets), np.array(rows)


@pytest.mark.parametrize("wrong_photos, right, wrong, helps", [(2, 0.9, 0.6, True), (3, 0.55, 0.95, False)])
def test_the_check_groups_held_out_people_votes_and_says_whether_the_vote_surely_helps(
    wrong_photos, right, wrong, helps, monkeypatch
):
    layouts, persons = separable_people(12)
    targets, probabilities = person_probabilities(persons, right, wrong, wrong_photos)
    checked = np.arange(7, 7 * 12)  # the first person is only ever in the identity spaces
    spaces = []  # per half: the persons its identity space learnt from, the persons it grouped

    def spying(known_layouts, known_persons, grouped_layouts):
        grouped = [persons[(layouts == row).all(axis=1)][0] for row in grouped_layouts]
        spaces.append((sorted(set(known_persons.tolist())), sorted(set(grouped))))
        return group_photos(known_layouts, known_persons, grouped_layouts)

    monkeypatch.setattr(people, "group_photos", spying)
    check = check_on_held_out(layouts, persons, checked, probabilities[checked], targets[checked])
    assert spaces == [([0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]), ([0, 1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10])]
    by_person = vote_in_people(probabilities[checked], persons[checked]).argmax(axis=1)
    assert check.purity == 1.0 and check.photos == 77 and check.people == 11
    assert check.f1_per_photo == round(macro_f1(targets[checked], probabilities[checked].argmax(axis=1)), 4)
    assert check.f1_grouped == round(macro_f1(targets[checked], by_person), 4)
    assert (check.f1_grouped > check.f1_per_photo) is helps
    assert check.sure == (1.0 if helps else 0.0) and check.helps is helps


@pytest.mark.parametrize("sure, helps", [(0.75, True), (0.7475, False), (1.0, True), (0.5, False)])
def test_the_vote_is_applied_where_it_wins_in_three_resamples_of_four(sure, helps):
    check = GroupingCheck(purity=0.98, f1_per_photo=0.70, f1_grouped=0.71, photos=70, people=10, sure=sure)
    assert check.helps is helps


def test_the_check_decides_as_the_prediction_will_so_a_voted_age_estimate_counts():
    """Learned borders at 30 and 60 cut the age estimate: two photos of each person estimated in the
    wrong group, their person's mean in the right one; the probabilities' own age part says nothing
    (uniform), so only the calibrated vote of the estimate can raise the F1."""
    layouts, persons = separable_people(12)
    ages = np.array([25.0, 45.0, 65.0])[persons % 3]
    estimates = ages + np.where(np.arange(len(persons)) % 7 >= 5, np.array([15.0, 20.0, -15.0])[persons % 3], 0.0)
    mask_gender = np.minimum(np.arange(len(persons)) % 7, 2) * 2 + persons % 2
    targets = mask_gender * 3 + np.digitize(ages, [30, 60])
    probabilities = np.repeat(np.eye(6)[mask_gender] * 0.9 + 0.1 / 6, 3, axis=1) / 3
    outputs = np.column_stack([probabilities, estimates])
    borders = AgeBorders([30, 60], 0.5, oof_f1_before=0, heldout_f1_after=0, fold_borders=[], guard_passed=True)
    calibration = Calibration(biases=[0.0] * 18, age=borders)

    checked = np.arange(7, 7 * 12)
    check = check_on_held_out(layouts, persons, checked, outputs[checked], targets[checked], calibration)
    per_photo = mask_gender[checked] * 3 + np.digitize(estimates[checked], [29.5, 59.5])
    assert check.f1_per_photo == round(macro_f1(targets[checked], per_photo), 4) < 1
    assert check.f1_grouped == 1.0 and check.sure == 1.0
    plain = check_on_held_out(layouts, persons, checked, outputs[checked], targets[checked])  # the argmax alone
    assert (
        plain.f1_grouped == plain.f1_per_photo == round(macro_f1(targets[checked], probabilities[checked].argmax(1)), 4)
    )


def check_per_fold_as_calibrate_learned(group, data, tmp_path, targets):
    """A calibration learned on the group's out-of-fold table decides each fold's photos in the
    check with what it learned on the other fold (fold 0: everything class 0, fold 1: the argmax);
    one learned elsewhere or on other folds, with the biases it applies to the test photos (zero:
    the argmax)."""
    validated = [pd.read_csv(group / f"fold{k}" / "valid_probabilities.csv") for k in range(2)]
    decided = np.concatenate([np.zeros(len(validated[0]), int), validated[1][PROBABILITY_COLUMNS].to_numpy().argmax(1)])
    argmax = np.concatenate([table[PROBABILITY_COLUMNS].to_numpy().argmax(1) for table in validated])
    per_fold = {"biases": [0.0] * 18, "fold_biases": [[50.0] + [0.0] * 17, [0.0] * 18]}
    here, elsewhere = group / "oof_probabilities.csv", tmp_path / "oof_probabilities.csv"
    for source, folds, expected in ((here, 2, decided), (elsewhere, 2, argmax), (here, 3, argmax)):
        Calibration(**per_fold, folds=folds, source=str(source)).write(tmp_path / "folds.json")
        check = predict_dataset(
            [group], data, cache_dir=tmp_path / "cache", group_people=True, calibration=tmp_path / "folds.json"
        ).grouping.check
        assert check.f1_per_photo == round(macro_f1(targets, expected), 4)


def test_share_of_resamples_better_is_the_bootstrap_over_people_spelled_out():
    rng = np.random.default_rng(1)
    persons = np.repeat(np.array(["c", "a", "b", "d", "e"]), 7)
    truth = rng.integers(0, 18, 35)
    before, after = np.where(rng.random(35) < 0.5, truth, 0), np.where(rng.random(35) < 0.6, truth, 1)
    draws = np.random.default_rng(0).multinomial(5, np.full(5, 0.2), 50)
    wins = 0
    for counts in draws:  # person k of the sorted names drawn counts[k] times, all their photos
        rows = np.concatenate(
            [np.repeat(np.flatnonzero(persons == name), n) for name, n in zip("abcde", counts, strict=True)]
        )
        wins += macro_f1(truth[rows], after[rows]) > macro_f1(truth[rows], before[rows])
    assert share_of_resamples_better(truth, before, after, persons, resamples=50) == wins / 50
    assert share_of_resamples_better(truth, before, before, persons) == 0.0
    assert share_of_resamples_better(truth, before, truth, persons) == 1.0


def test_colour_layouts_tell_the_synthetic_people_apart(synth_small):
    from maskcls.data.cache import cached_images

    training = read_dataset(synth_small).train
    photos = cached_images(synth_small, list(training["path"]), people.LAYOUT_SIZE, synth_small.parent / "cache")
    layouts, persons = colour_layouts(photos), training["profile"].to_numpy()
    known = np.isin(persons, np.unique(persons)[::2])
    found = group_photos(layouts[known], persons[known], layouts[~known])
    assert purity(found, persons[~known]) >= 0.9  # 12 people each in one setting: backdrop, clothes, hair, skin


def test_face_crops_are_told_apart_by_their_whole_photos_too_where_the_crop_folder_still_finds_them(
    tmp_path, synth_small, caplog
):
    from maskcls.data.cache import cached_images
    from maskcls.faces.crop import CropOptions, crop_dataset

    faces = tmp_path / "faces"
    crop_dataset(synth_small, faces, CropOptions(detector="mtcnn", size=(48, 64)))
    training = read_dataset(faces).train
    paths, persons = list(training["path"]), training["profile"].to_numpy()
    assert (
        people.whole_photos(faces, paths) == synth_small.resolve() and people.whole_photos(synth_small, paths) is None
    )
    crops = people.identity_layouts(faces, paths, tmp_path / "cache", None)
    both = people.identity_layouts(faces, paths, tmp_path / "cache", synth_small)
    whole = colour_layouts(cached_images(synth_small, paths, people.LAYOUT_SIZE, tmp_path / "cache"))
    assert np.array_equal(both, np.concatenate([crops, whole], axis=1))
    assert np.array_equal(crops, colour_layouts(cached_images(faces, paths, people.LAYOUT_SIZE, tmp_path / "cache")))
    known = np.isin(persons, np.unique(persons)[::2])
    by_crops = purity(group_photos(crops[known], persons[known], crops[~known]), persons[~known])
    by_both = purity(group_photos(both[known], persons[known], both[~known]), persons[~known])
    assert by_both == 1.0 > by_crops  # 12 held-out people: the backdrop and the clothes beyond the crop tell them apart

    settings = json.loads((faces / "crop.json").read_text())
    (faces / "crop.json").write_text(json.dumps({**settings, "photos": str(tmp_path / "gone")}))
    assert people.whole_photos(faces, paths) is None
    assert f"{tmp_path / 'gone'}, which {faces} was cropped from, no longer holds all its photos" in caplog.text


def test_predict_groups_people_and_votes_only_where_the_check_is_sure(tmp_path, synth_small, monkeypatch, capsys):
    from maskcls.evaluation.score import validation_f1
    from maskcls.experiments.cv import cross_validate
    from maskcls.inference.predict import write_predictions
    from tests.helpers import tiny_config as cv_config

    group = cross_validate(cv_config(synth_small, tmp_path, "train.folds=2"), runs_dir=tmp_path / "runs").folder
    plain = predict_dataset([group], synth_small, cache_dir=tmp_path / "cache")
    kept = predict_dataset([group], synth_small, cache_dir=tmp_path / "cache", group_people=True)
    check = kept.grouping.check  # a one-epoch model: the vote does not surely help
    assert check.photos == sum(len(pd.read_csv(group / f"fold{k}" / "valid_probabilities.csv")) for k in range(2))
    assert check.people == 24 and not kept.grouping.applied
    Calibration(biases=[50.0] + [0.0] * 17).write(tmp_path / "class0.json")  # every photo decided class 0
    biased = predict_dataset(
        [group], synth_small, cache_dir=tmp_path / "cache", group_people=True, calibration=tmp_path / "class0.json"
    )
    targets = pd.concat([pd.read_csv(group / f"fold{k}" / "valid_probabilities.csv") for k in range(2)])["target"]
    assert biased.grouping.check.f1_per_photo == round(macro_f1(targets, np.zeros(len(targets), dtype=int)), 4)
    check_per_fold_as_calibrate_learned(group, synth_small, tmp_path, targets)
    assert np.array_equal(kept.table[PROBABILITY_COLUMNS].to_numpy(), plain.table[PROBABILITY_COLUMNS].to_numpy())
    write_predictions(tmp_path / "out", kept)
    found = pd.read_csv(tmp_path / "out" / "person_groups.csv")
    assert len(found) == len(plain.table) and found["person"].nunique() == round(len(found) / 7)
    truth = pd.read_csv(synth_small / "truth" / "eval.csv").set_index("ImageID").loc[found["ImageID"], "person"]
    assert purity(found["person"].to_numpy(), truth.to_numpy()) >= 0.9

    monkeypatch.setattr(people, "SURE_ENOUGH", 0.0)  # as if the check were sure: the vote is applied
    voted = predict_dataset([group], synth_small, cache_dir=tmp_path / "cache", group_people=True)
    assert voted.grouping.applied
    assert np.array_equal(voted.people["person"].to_numpy(), found["person"].to_numpy())
    mask_plain = plain.table[PROBABILITY_COLUMNS].to_numpy().reshape(-1, 3, 6).sum(axis=2)
    mask_voted = voted.table[PROBABILITY_COLUMNS].to_numpy().reshape(-1, 3, 6).sum(axis=2)
    assert np.allclose(mask_plain, mask_voted, atol=1e-6)
    by_person = voted.table.assign(person=found["person"].to_numpy()).groupby("person")
    gender = by_person[PROBABILITY_COLUMNS].apply(lambda frame: frame.to_numpy().reshape(-1, 3, 2, 3).sum(axis=(1, 3)))
    assert all(np.allclose(values, values[0]) for values in gender)
    write_predictions(tmp_path / "voted", voted)  # score's CV F1: the check's for the voted decisions
    assert validation_f1(tmp_path / "voted" / "submission.csv") == voted.grouping.check.f1_grouped
    assert validation_f1(tmp_path / "out" / "submission.csv") == json.loads((group / "cv.json").read_text())["oof_f1"]
    monkeypatch.undo()
    code, out, err = run_cli(
        "predict", str(group), "--data", str(synth_small), "--group-people", "--out", str(tmp_path / "cli"),
        "--cache-dir", str(tmp_path / "cache"), capsys=capsys,
    )  # fmt: skip
    assert code == 0 and f"photos of 24 held-out training people: purity {check.purity:.3f}" in out
    assert "not applied to the test photos" in out and "--group-people: not applied" in err
