import shutil

import pytest

from maskcls.data.layout import read_dataset
from maskcls.errors import DataError
from tests.helpers import make_layout, write_csv, write_image

PROFILE = "000001_female_Asian_45"


def kinds(dataset):
    return sorted(problem.kind for problem in dataset.problems)


def test_clean_layout_reads_one_row_per_image(layout):
    dataset = read_dataset(layout, strict=True, verify_images=True)
    assert len(dataset.train) == 14 and len(dataset.people) == 2
    row = dataset.train[dataset.train["stem"] == "incorrect_mask"].iloc[0]
    assert row["mask"] == 1 and row["path"].startswith("train/images/")
    female = dataset.people.set_index("profile").loc[PROFILE]
    assert female["gender"] == 1 and female["age"] == 45 and female["person_id"] == "000001"
    assert list(dataset.eval["ImageID"]) == ["a" * 40 + ".jpg"]


def test_mixed_and_upper_case_extensions(layout):
    folder = layout / "train/images" / PROFILE
    (folder / "mask1.jpg").rename(folder / "mask1.PNG")
    (folder / "mask2.jpg").rename(folder / "mask2.jpeg")
    (folder / "normal.jpg").rename(folder / "normal.JPG")
    dataset = read_dataset(layout, strict=True)
    paths = set(dataset.train["path"])
    assert f"train/images/{PROFILE}/mask1.PNG" in paths and f"train/images/{PROFILE}/normal.JPG" in paths


def test_macos_files_and_hidden_folders_are_ignored(layout):
    (layout / "train/images" / PROFILE / "._mask1.jpg").write_bytes(b"\x00\x05\x16\x07")
    (layout / "train/images" / f"._{PROFILE}").write_bytes(b"\x00\x05\x16\x07")
    (layout / "train/images/.ipynb_checkpoints").mkdir()
    (layout / "eval/images/._x.jpg").write_bytes(b"\x00")
    dataset = read_dataset(layout, strict=True)
    assert len(dataset.train) == 14
    assert dataset.ignored == {"macOS ._ files": 3, "hidden files and folders": 1}


def test_people_are_keyed_by_folder_not_id(tmp_path):
    root = make_layout(tmp_path, ["003397_female_Asian_20", "003397_male_Asian_21", "001498-1_male_Asian_38"])
    dataset = read_dataset(root, strict=True)
    assert len(dataset.people) == 3
    assert sorted(dataset.people["person_id"]) == ["001498-1", "003397", "003397"]


def test_missing_extra_and_unknown_images(layout):
    folder = layout / "train/images" / PROFILE
    (folder / "normal.jpg").unlink()
    shutil.copy(folder / "mask1.jpg", folder / "mask1.png")
    write_image(folder / "mask6.jpg")
    (folder / "notes.txt").write_text("hi")
    dataset = read_dataset(layout)
    assert kinds(dataset) == ["extra_image", "missing_image", "not_an_image", "unknown_stem"]
    assert len(dataset.train) == 13  # the missing one is gone, the duplicate counted once
    with pytest.raises(DataError) as error:
        read_dataset(layout, strict=True)
    assert len(error.value.lines) == 4
    assert any(line.startswith(f"train/images/{PROFILE}/mask6.jpg:") for line in error.value.lines)


def test_rows_and_folders_that_do_not_match(layout):
    rows = [
        {"id": "000001", "gender": "female", "race": "Asian", "age": "45", "path": PROFILE},
        {"id": "000003", "gender": "male", "race": "Asian", "age": "30", "path": "000003_male_Asian_30"},
        {"id": "000004", "gender": "male", "race": "Asian", "age": "abc", "path": "000004_male_Asian_40"},
        {"id": "000005", "gender": "other", "race": "Asian", "age": "20", "path": "000005_other_Asian_20"},
    ]
    write_csv(layout / "train/train.csv", ["id", "gender", "race", "age", "path"], rows)
    (layout / "train/images/badname").mkdir()
    dataset = read_dataset(layout)
    messages = [str(problem) for problem in dataset.problems]
    assert "train/train.csv line 3: folder '000003_male_Asian_30' not found under train/images/" in messages
    assert "train/train.csv line 4: age 'abc' is not a number" in messages
    assert "train/train.csv line 5: gender 'other' is not 'male' or 'female'" in messages
    assert "train/images/000002_male_Asian_22: profile folder has no row in train/train.csv" in messages
    assert "train/images/badname: profile folder has no row in train/train.csv" in messages
    assert list(dataset.people["profile"]) == [PROFILE]


def test_folder_name_that_does_not_parse_or_disagrees(layout):
    images = layout / "train/images"
    (images / "000002_male_Asian_22").rename(images / "000002_male_Asian")
    rows = [
        {"id": "000001", "gender": "male", "race": "Asian", "age": "45", "path": PROFILE},
        {"id": "000002", "gender": "male", "race": "Asian", "age": "22", "path": "000002_male_Asian"},
    ]
    write_csv(layout / "train/train.csv", ["id", "gender", "race", "age", "path"], rows)
    dataset = read_dataset(layout)
    assert kinds(dataset) == ["bad_folder_name", "label_mismatch"]
    assert dataset.people.iloc[0]["gender"] == 0  # train.csv wins over the folder name


def test_truncated_image_is_found_and_skipped(layout):
    path = layout / "train/images" / PROFILE / "mask3.jpg"
    write_image(path, size=(384, 512))
    path.write_bytes(path.read_bytes()[:600])
    assert read_dataset(layout).problems == []  # not decoded unless asked
    dataset = read_dataset(layout, verify_images=True)
    assert kinds(dataset) == ["unreadable_image"]
    assert dataset.problems[0].path == f"train/images/{PROFILE}/mask3.jpg"
    assert len(dataset.train) == 13


def test_eval_image_ids_are_checked(layout):
    names = ["b" * 40 + ".jpg", "../secret.jpg", "c" * 40 + ".png", "b" * 40 + ".jpg", "/etc/passwd"]
    write_image(layout / "eval/images" / names[0])
    write_csv(layout / "eval/info.csv", ["ImageID", "ans"], [{"ImageID": n, "ans": 0} for n in names])
    dataset = read_dataset(layout)
    messages = [str(problem) for problem in dataset.problems]
    assert messages == [
        "eval/info.csv line 3: ImageID '../secret.jpg' is not a plain file name",
        f"eval/info.csv line 4: image '{'c' * 40}.png' not found in eval/images/",
        f"eval/info.csv line 5: ImageID '{'b' * 40}.jpg' is listed again (first on line 2)",
        "eval/info.csv line 6: ImageID '/etc/passwd' is not a plain file name",
    ]
    assert list(dataset.eval["row"]) == [0]
    assert dataset.ignored["eval images not listed in info.csv"] == 1


def test_missing_files_and_columns_are_errors(tmp_path, layout):
    with pytest.raises(DataError, match="dataset folder not found"):
        read_dataset(tmp_path / "nowhere")
    write_csv(layout / "train/train.csv", ["id", "sex", "path"], [])
    with pytest.raises(DataError, match=r"train/train.csv line 1: missing column\(s\) gender, race, age"):
        read_dataset(layout)
    (layout / "train/train.csv").unlink()
    with pytest.raises(DataError, match="train.csv: file not found"):
        read_dataset(layout)


def test_a_contact_sheet_has_one_row_of_seven_photos_per_person(layout, tmp_path):
    from PIL import Image

    from maskcls.data.sheet import contact_sheet

    path = contact_sheet(read_dataset(layout), tmp_path / "sheet.png", people=5, thumb=(30, 40))
    assert Image.open(path).size == (30 * 7, (40 + 16) * 2)  # the folder has 2 people
