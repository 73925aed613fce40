"""Voting rules and submission validation, on hand-made probability tables."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from maskcls.errors import DataError, UserError
from maskcls.evaluation.ensemble import ensemble, hard_vote, soft_vote
from maskcls.evaluation.score import read_submission, score_predictions, score_submission
from maskcls.inference.predict import PROBABILITY_COLUMNS


def one_hot_rows(*rows: dict[int, float]) -> np.ndarray:
    table = np.zeros((len(rows), 18))
    for index, row in enumerate(rows):
        for k, value in row.items():
            table[index, k] = value
    return table


def test_hard_vote_tie_goes_to_the_highest_summed_probability():
    a = one_hot_rows({3: 0.6, 5: 0.4})
    b = one_hot_rows({5: 0.9, 3: 0.1})
    classes, shares = hard_vote([a, b], np.array([1.0, 1.0]))
    assert classes.tolist() == [5]  # one vote each; 5 has 1.3 summed probability against 0.7
    assert shares[0, 3] == shares[0, 5] == 0.5
    c = one_hot_rows({3: 0.4, 7: 0.35, 5: 0.25})
    classes, _ = hard_vote([a, b, c], np.array([1.0, 1.0, 1.0]))
    assert classes.tolist() == [3]  # two votes beat one, whatever the probabilities
    weighted, _ = hard_vote([a, b], np.array([1.0, 2.0]))
    assert weighted.tolist() == [5]


def test_soft_vote_weights():
    a, b = one_hot_rows({1: 1.0}), one_hot_rows({2: 1.0})
    combined = soft_vote([a, b], np.array([3.0, 1.0]))
    assert combined[0, 1] == pytest.approx(0.75) and combined[0, 2] == pytest.approx(0.25)


def write_table(path, ids, probabilities, key="ImageID", target=None):
    frame = pd.DataFrame(probabilities, columns=PROBABILITY_COLUMNS)
    if target is not None:
        frame.insert(0, "target", target)
    frame.insert(0, key, ids)
    frame.to_csv(path, index=False)
    return path


def test_ensemble_aligns_rows_by_key_and_keeps_targets(tmp_path):
    a = write_table(tmp_path / "a.csv", ["x", "y"], one_hot_rows({1: 1.0}, {2: 1.0}), "path", [1, 2])
    b = write_table(tmp_path / "b.csv", ["y", "x"], one_hot_rows({2: 1.0}, {4: 1.0}), "path", [2, 1])
    result = ensemble([a, b], "soft", [1.0, 3.0])
    assert result.key == "path" and result.table["path"].tolist() == ["x", "y"]
    assert result.classes.tolist() == [4, 2] and result.table["target"].tolist() == [1, 2]
    c = write_table(tmp_path / "c.csv", ["x", "z"], one_hot_rows({1: 1.0}, {2: 1.0}), "path")
    with pytest.raises(UserError, match="rows differ"):
        ensemble([a, c])
    with pytest.raises(UserError, match="2 inputs"):
        ensemble([a, b], weights=[1.0])


IDS = ["a.jpg", "b.JPG", "c.png"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ImageID,answer\na.jpg,1\nb.JPG,2\nc.png,3\n", r"line 1: header must be ImageID,ans"),
        ("ImageID,ans\nb.JPG,1\na.jpg,2\nc.png,3\n", r"line 2: ImageID 'b.JPG' where info.csv has 'a.jpg'"),
        ("ImageID,ans\na.jpg,1\nb.JPG,2\n", r"line 4: row missing: ImageID 'c.png' \(info.csv row 4\)"),
        ("ImageID,ans\na.jpg,1\nc.png,3\n", r"line 3: row missing: ImageID 'b.JPG' \(info.csv row 3\) has no"),
        ("ImageID,ans\na.jpg,1\nc.png,3\nc.png,3\n", r"line 3: ImageID 'c.png' where info.csv has 'b.JPG'"),
        ("ImageID,ans\na.jpg,1\nb.JPG,18\nc.png,3\n", r"line 3: ans 18 is outside 0..17"),
        ("ImageID,ans\na.jpg,1\nb.JPG,x\nc.png,3\n", r"line 3: ans 'x' is not an integer"),
        ("ImageID,ans\na.jpg,1\nb.JPG,2\nc.png,3\nd.jpg,4\n", r"line 5: extra row"),
    ],
)
def test_submission_problems_are_named_with_their_line(tmp_path, text, message):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_submission(path, IDS)


def test_macro_f1_matches_scikit_learn_on_every_half(tmp_path):
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 18, 400), rng.integers(0, 18, 400)
    predicted[:150] = truth[:150]
    halves = np.where(rng.random(400) < 0.5, "public", "private")
    result = score_predictions(truth, predicted, halves)
    for half in ("public", "private"):
        rows = halves == half
        expected = f1_score(truth[rows], predicted[rows], average="macro", labels=range(18), zero_division=0)
        assert result[half]["f1"] == pytest.approx(expected)
    assert result["all"]["f1"] == pytest.approx(f1_score(truth, predicted, average="macro", labels=range(18)))


def test_score_reads_answers_and_writes_nothing_wrong(tmp_path):
    answers = tmp_path / "eval.csv"
    pd.DataFrame({"ImageID": IDS, "ans": [1, 2, 3], "half": ["public", "private", "public"]}).to_csv(
        answers, index=False
    )
    submission = tmp_path / "submission.csv"
    submission.write_text("ImageID,ans\na.jpg,1\nb.JPG,2\nc.png,4\n")
    result = score_submission(submission, answers)
    assert result["private"]["accuracy"] == 1.0 and result["public"]["accuracy"] == 0.5
    probabilities = write_table(tmp_path / "p.csv", IDS, one_hot_rows({1: 1.0}, {2: 1.0}, {3: 1.0}))
    assert score_submission(probabilities, answers)["all"]["accuracy"] == 1.0


def test_the_info_csv_placeholder_is_refused_as_answers_and_nothing_is_overwritten(tmp_path, capsys):
    from tests.helpers import run_cli

    info = tmp_path / "info.csv"
    info.write_text("ImageID,ans\na.jpg,0\nb.JPG,0\nc.png,0\n")
    submission = tmp_path / "submission.csv"
    submission.write_text("ImageID,ans\na.jpg,1\nb.JPG,2\nc.png,4\n")
    (tmp_path / "submission.score.json").write_text('{"kept": true}')
    code, _, err = run_cli("score", str(submission), "--truth", str(info), capsys=capsys)
    assert code == 2
    assert f"{info}: every ans is 0: that is the eval/info.csv placeholder, not the answers" in err
    assert (tmp_path / "submission.score.json").read_text() == '{"kept": true}'


def test_a_folder_without_probabilities_says_which_command_writes_them(tmp_path):
    from maskcls.evaluation.ensemble import input_file

    with pytest.raises(UserError) as error:
        input_file(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: no test_probabilities.csv (`maskcls predict {tmp_path} --data DATA` writes it; "
        "--oof combines out-of-fold probabilities)"
    )
    with pytest.raises(
        UserError, match=r"no oof_probabilities.csv or valid_probabilities.csv \(a finished `maskcls cv`"
    ):
        input_file(tmp_path, oof=True)


def test_a_cut_probabilities_file_is_named_with_its_line(tmp_path):
    from maskcls.rundir.tables import read_probabilities

    whole = write_table(tmp_path / "p.csv", IDS, one_hot_rows({1: 1.0}, {2: 1.0}, {3: 1.0}))
    text = whole.read_text()
    cut = tmp_path / "cut.csv"
    cut.write_text(text[: text.rindex(",") - 3])  # the last row stops in the middle
    with pytest.raises(
        UserError, match=rf"{cut} line 4: p1[0-7]? is '.*', not a probability \(a cut or damaged file\?\)"
    ):
        read_probabilities(cut)
    assert read_probabilities(whole)[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1).tolist() == [1, 2, 3]


def people_answers(tmp_path, people: int = 12, seed: int = 3):
    """Answers with a person column: 7 photos each, one gender x age per person, public/private
    by person; and two submissions, the second closer to the truth."""
    rng = np.random.default_rng(seed)
    strata = rng.integers(0, 6, people)
    persons = np.repeat([f"p{k:02d}" for k in range(people)], 7)
    truth = np.tile(np.array([0, 0, 0, 0, 0, 1, 2]) * 6, people) + np.repeat(strata, 7)
    halves = np.repeat(np.where(np.arange(people) % 3 == 0, "public", "private"), 7)
    ids = [f"{k:03d}.jpg" for k in range(len(truth))]
    answers = tmp_path / "eval.csv"
    pd.DataFrame({"ImageID": ids, "ans": truth, "person": persons, "half": halves}).to_csv(answers, index=False)
    files = []
    for name, share in (("first", 0.5), ("second", 0.8)):
        predicted = np.where(rng.random(len(truth)) < share, truth, rng.integers(0, 18, len(truth)))
        files.append(tmp_path / f"{name}.csv")
        pd.DataFrame({"ImageID": ids, "ans": predicted}).to_csv(files[-1], index=False)
    return answers, files, (truth, persons, halves)


def test_the_private_interval_and_beating_the_first_are_the_bootstrap_over_people_by_gender_and_age(tmp_path):
    from maskcls.evaluation.score import score_submissions
    from maskcls.metrics import RESAMPLES, macro_f1

    answers, files, (truth, persons, halves) = people_answers(tmp_path)
    same = tmp_path / "same-as-first.csv"
    same.write_bytes(files[0].read_bytes())
    results = score_submissions([*files, same], answers)
    private = halves == "private"
    names = np.unique(persons[private])
    strata = np.array([truth[persons == name][0] % 6 for name in names])
    rng = np.random.default_rng(0)
    counts = np.zeros((RESAMPLES, len(names)), int)
    for stratum in np.unique(strata):  # each gender x age group keeps its number of people
        members = np.flatnonzero(strata == stratum)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), RESAMPLES)
    predicted = [pd.read_csv(path)["ans"].to_numpy() for path in files]
    resampled = np.zeros((2, RESAMPLES))
    for index, drawn in enumerate(counts):
        rows = np.concatenate(
            [np.repeat(np.flatnonzero(persons == name), n) for name, n in zip(names, drawn, strict=True)]
        )
        resampled[:, index] = [macro_f1(truth[rows], classes[rows]) for classes in predicted]
    first, second = (results[str(path)]["private"] for path in files)
    assert first["f1_interval"] == np.quantile(resampled[0], [0.05, 0.95]).round(4).tolist()
    assert second["f1_interval"] == np.quantile(resampled[1], [0.05, 0.95]).round(4).tolist()
    assert second["share_beating_first"] == (resampled[1] > resampled[0]).mean()
    assert "share_beating_first" not in first and "f1_interval" not in results[str(files[0])]["public"]
    assert results[str(same)]["private"]["share_beating_first"] == 0.0  # a tie is no win


def test_score_prints_the_interval_only_where_the_answers_name_people(tmp_path, capsys):
    from tests.helpers import run_cli

    answers, files, _ = people_answers(tmp_path)
    code, out, _ = run_cli("score", *map(str, files), "--truth", str(answers), capsys=capsys)
    assert code == 0
    assert "private F1 90% interval" in out and "of resamples" in out
    assert "interval: 90% of 1000 bootstrap resamples of the ranking half's people" in out
    pd.read_csv(answers).drop(columns="person").to_csv(answers, index=False)
    code, out, _ = run_cli("score", *map(str, files), "--truth", str(answers), capsys=capsys)
    assert code == 0 and "90% interval" not in out and "resamples" not in out


def out_of_fold_files(tmp_path, people: int = 10):
    """Two out-of-fold CSVs of the same photos, the second in another row order; their
    probabilities' argmax classes; the photos' targets and persons."""
    rng = np.random.default_rng(5)
    strata = rng.integers(0, 6, people)
    profiles = np.repeat([f"{k:06d}_x" for k in range(people)], 7)
    target = np.tile(np.array([0, 0, 0, 0, 0, 1, 2]) * 6, people) + np.repeat(strata, 7)
    paths = [f"train/images/{profile}/{k}.jpg" for profile, k in zip(profiles, np.tile(range(7), people), strict=True)]
    files, classes = [], []
    for name, share in (("a", 0.6), ("b", 0.8)):
        predicted = np.where(rng.random(len(target)) < share, target, rng.integers(0, 18, len(target)))
        table = pd.DataFrame({"path": paths, "profile": profiles, "target": target, "fold": 0})
        table[PROBABILITY_COLUMNS] = one_hot_rows(*({int(k): 1.0} for k in predicted))
        order = rng.permutation(len(table)) if name == "b" else np.arange(len(table))
        files.append(tmp_path / f"{name}.csv")
        table.iloc[order].to_csv(files[-1], index=False)
        classes.append(predicted)
    return files, classes, target, profiles


def test_compare_is_the_out_of_fold_f1_and_the_bootstrap_over_training_people_rows_matched_by_path(tmp_path):
    import maskcls
    from maskcls.metrics import RESAMPLES, macro_f1, resampled_macro_f1

    files, classes, target, profiles = out_of_fold_files(tmp_path)
    first, second = maskcls.compare(files)
    resampled = resampled_macro_f1(target, classes, profiles, RESAMPLES, strata=target % 6)
    assert (first.f1, second.f1) == (macro_f1(target, classes[0]), macro_f1(target, classes[1]))
    assert first.interval == tuple(np.quantile(resampled[0], [0.05, 0.95]).round(4).tolist())
    assert second.interval == tuple(np.quantile(resampled[1], [0.05, 0.95]).round(4).tolist())
    assert first.share_beating_first is None
    assert second.share_beating_first == (resampled[1] > resampled[0]).mean() > 0.5


def test_compare_refuses_other_photos_or_labels_naming_the_file(tmp_path, capsys):
    import maskcls
    from tests.helpers import run_cli

    files, *_ = out_of_fold_files(tmp_path)
    code, out, _ = run_cli("compare", *map(str, files), capsys=capsys)
    assert code == 0 and "beats first" in out and "of resamples" in out
    first, second = maskcls.compare(files)  # the cells say the library's figures
    assert f"{first.interval[0]:.4f}-{first.interval[1]:.4f}" in out
    assert f"{second.share_beating_first:.0%} of resamples" in out
    table = pd.read_csv(files[1])
    table.loc[table.index[:7], "target"] = (table["target"].iloc[:7] + 1) % 18
    table.to_csv(files[1], index=False)
    code, _, err = run_cli("compare", *map(str, files), capsys=capsys)
    assert code == 2 and f"{files[1]}: " in err and "has another label than in" in err
    table.iloc[1:].to_csv(files[1], index=False)
    code, _, err = run_cli("compare", *map(str, files), capsys=capsys)
    assert code == 2 and "not the same photos as" in err and "compare needs the same training set" in err
