import numpy as np
import pandas as pd
import pytest

from maskcls.data.split import TRAIN_ONLY, load_or_make_folds, make_folds, make_holdout, split_rows, strata
from maskcls.errors import UserError


def people_table(count=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "profile": [f"{k:06d}_x_Asian_{k}" for k in range(count)],
            "gender": (rng.random(count) < 0.6).astype(int),
            "age": rng.choice([20, 45, 60], size=count, p=[0.45, 0.45, 0.1]),
        }
    )


def images_of(people):
    return people.loc[people.index.repeat(7), ["profile"]].reset_index(drop=True)


def test_every_person_in_exactly_one_fold_and_strata_balanced():
    people = people_table()
    folds = make_folds(people, folds=5, seed=1)
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert folds["profile"].is_unique and len(folds) == len(people)
    counts = pd.crosstab(strata(people), folds["fold"].to_numpy())
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1  # each stratum spread evenly


def test_no_person_on_both_sides():
    people = people_table()
    images = images_of(people)
    folds = make_folds(people, folds=5)
    for fold in range(5):
        train, valid = split_rows(images, folds, fold)
        assert len(train) + len(valid) == len(images)
        assert not set(images["profile"][train]) & set(images["profile"][valid])
        assert len(valid) % 7 == 0


def test_holdout_ratio_and_stratification():
    people = people_table()
    folds = make_holdout(people, valid_ratio=0.2, seed=3)
    assert (folds["fold"] == 0).sum() == 40 and (folds["fold"] == TRAIN_ONLY).sum() == 160
    valid_share = pd.Series(strata(people)[folds["fold"] == 0]).value_counts(normalize=True).sort_index()
    all_share = pd.Series(strata(people)).value_counts(normalize=True).sort_index()
    assert np.allclose(valid_share, all_share, atol=0.05)


def test_folds_file_is_written_once_and_reused(tmp_path):
    people = people_table(50)
    path = tmp_path / "folds.csv"
    first = load_or_make_folds(path, people, folds=5, seed=0)
    again = load_or_make_folds(path, people, folds=5, seed=99)  # another seed: still the file
    assert first.equals(again)
    with pytest.raises(UserError, match="not 0..2"):
        load_or_make_folds(path, people, folds=3)
    with pytest.raises(UserError, match="1 people have no fold"):
        load_or_make_folds(path, people_table(51), folds=5)


def test_same_seed_same_folds_other_seed_other_folds():
    people = people_table()
    assert make_folds(people, 5, seed=4).equals(make_folds(people, 5, seed=4))
    assert not make_folds(people, 5, seed=4).equals(make_folds(people, 5, seed=5))


def test_people_too_few_for_stratified_folds_are_split_without_strata(caplog):
    few = pd.DataFrame({"profile": ["a", "b", "c", "d"], "gender": [0, 1, 0, 1], "age": [45, 22, 64, 31]})
    with caplog.at_level("WARNING", logger="maskcls"):
        folds = make_folds(few, folds=2, seed=0)
    assert sorted(folds["fold"].value_counts().tolist()) == [2, 2]
    assert "no gender x age group has 2 people: the 2 folds are drawn without stratifying" in caplog.text
