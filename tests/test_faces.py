import csv
import errno
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.data.layout import read_dataset
from maskcls.errors import UserError, WriteFailed
from maskcls.evaluation.detection import detection_table, rates_by_age_group, rates_by_state
from maskcls.faces.crop import CropOptions, crop_dataset, whole_photos_folder
from maskcls.faces.detectors import FixedBoxDetector, create_detector
from maskcls.faces.geometry import box_iou, crop_box
from maskcls.labels import Mask, age_groups
from tests.helpers import make_layout, write_image


def read_boxes(out):
    with (out / "boxes.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_crop_box_margin_aspect_and_clipping():
    assert crop_box((100, 100, 200, 200), (384, 512), margin=0.0) == (100, 100, 200, 200)
    assert crop_box((100, 100, 200, 200), (384, 512), margin=0.25) == (75, 75, 225, 225)
    x0, y0, x1, y1 = crop_box((100, 100, 200, 200), (384, 512), margin=0.0, aspect=0.75)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.75, abs=0.01) and (x1 - x0) == 100
    assert crop_box((-20, 10, 60, 90), (384, 512), margin=0.0) == (0, 10, 80, 90)  # shifted inside
    assert crop_box((300, 400, 420, 560), (384, 512), margin=0.0) == (264, 352, 384, 512)
    assert crop_box((0, 0, 384, 512), (384, 512), margin=0.5) == (0, 0, 384, 512)  # clipped


def test_unknown_detector_suggests_a_name():
    with pytest.raises(UserError, match=r"unknown detector 'mtcn' \(did you mean 'mtcnn'\?\); known: fixed, mtcnn"):
        create_detector("mtcn")


def test_mtcnn_finds_the_face_in_a_real_photograph():
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut()  # 512x512, a real portrait shipped with scikit-image
    detection = create_detector("mtcnn", detect_scale=0.5, min_face_size=60).detect([photo])[0]
    assert detection is not None and detection.probability > 0.95
    x0, y0, x1, y1 = detection.box
    assert 150 < (x0 + x1) / 2 < 260 and 50 < (y0 + y1) / 2 < 160  # her face, not the flag or suit
    assert 50 < x1 - x0 < 160
    region = crop_box(detection.box, (512, 512), margin=0.3)
    assert region[0] <= x0 and region[1] <= y0 and region[2] >= x1 and region[3] >= y1


def test_layout_is_mirrored_exactly(synth_quirks, tmp_path):
    out = tmp_path / "crops"
    summary = crop_dataset(synth_quirks, out, CropOptions(detector="mtcnn", size=(48, 64)))
    source = read_dataset(synth_quirks)
    expected = set(source.train["path"]) | set(source.eval["path"])
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "images/" in p.as_posix()}
    unreadable = {row["path"] for row in read_boxes(out) if row["status"] == "unreadable"}
    assert written == expected - unreadable and len(unreadable) == 1
    assert any(p.endswith(".JPG") for p in written) and any(p.endswith(".png") for p in written)
    for table in ("train/train.csv", "eval/info.csv"):
        assert (out / table).read_bytes() == (synth_quirks / table).read_bytes()
    cropped = read_dataset(out, verify_images=True)
    assert len(cropped.train) == len(source.train) - 1
    with Image.open(out / cropped.train["path"][0]) as image:
        assert image.size == (48, 64)
    assert summary.by_split["train"]["detected"] > 0
    assert not [p for p in out.rglob("*.tmp")]


def test_fallback_box_when_no_face(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45"])
    for path in (root / "train/images").rglob("*.jpg"):
        write_image(path, colour=(90, 140, 200), size=(384, 512))  # a blank wall: no face
    out = tmp_path / "crops"
    crop_dataset(root, out, CropOptions(detector="mtcnn", margin=0.0))
    rows = [row for row in read_boxes(out) if row["split"] == "train"]
    assert len(rows) == 7 and {row["status"] for row in rows} == {"fallback"}
    x0, y0, x1, y1 = (round(v) for v in FixedBoxDetector().box_for(384, 512))
    assert rows[0]["crop_x0"] == str(x0) and rows[0]["crop_y1"] == str(y1)
    with Image.open(out / rows[0]["path"]) as image:
        assert image.size == (x1 - x0, y1 - y0)


def test_resume_after_an_interrupted_run(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45", "000002_male_Asian_22"])
    out = tmp_path / "crops"
    first = crop_dataset(root, out, CropOptions(detector="fixed", limit=5))
    assert first.processed == 5
    # as if killed: half a row appended, and one image whose row exists lost from disk
    with (out / "boxes.csv").open("a") as handle:
        handle.write("train,train/images/000002_male_Asian_22/mask1.jpg,detec")
    done = [row["path"] for row in read_boxes(out) if row["status"] == "fallback"]
    (out / done[0]).unlink()
    second = crop_dataset(root, out, CropOptions(detector="fixed"))
    assert second.skipped == 4 and second.processed == 15 - 4
    paths = [row["path"] for row in read_boxes(out)]
    assert len(paths) == len(set(paths)) == 15
    third = crop_dataset(root, out, CropOptions(detector="fixed"))
    assert third.processed == 0 and third.skipped == 15


def test_a_full_disk_stops_the_crop_with_one_line_and_a_rerun_finishes_it(tmp_path, monkeypatch):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45", "000002_male_Asian_22"])
    whole = tmp_path / "whole"
    crop_dataset(root, whole, CropOptions(detector="fixed", workers=1))
    out = tmp_path / "crops"
    real_save, saved = Image.Image.save, []

    def fill_the_disk(image, target, *args, **kwargs):
        if len(saved) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(target)
        return real_save(image, target, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fill_the_disk)
    with pytest.raises(WriteFailed) as stopped:
        crop_dataset(root, out, CropOptions(detector="fixed", workers=1))
    message = str(stopped.value)
    assert "No space left on device" in message and "run the same crop again to continue" in message
    assert message.startswith(str(out / "train/images")) and message.split(":")[0].endswith(".jpg")
    assert len(read_boxes(out)) == 6 and not list(out.rglob("*.tmp"))
    monkeypatch.setattr(Image.Image, "save", real_save)
    again = crop_dataset(root, out, CropOptions(detector="fixed", workers=1))
    assert again.skipped == 6 and again.processed == 15 - 6
    for row in read_boxes(whole):
        assert (out / row["path"]).read_bytes() == (whole / row["path"]).read_bytes()
    assert sorted(map(str, read_boxes(out))) == sorted(map(str, read_boxes(whole)))


def test_bad_image_is_recorded_and_the_run_goes_on(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45"])
    broken = root / "train/images/000001_female_Asian_45/mask4.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "crops"
    summary = crop_dataset(root, out, CropOptions(detector="fixed"))
    assert summary.unreadable == 1 and summary.processed == 8
    row = next(r for r in read_boxes(out) if r["status"] == "unreadable")
    assert row["path"].endswith("mask4.jpg") and "cannot decode" in row["error"]
    assert not (out / row["path"]).exists()


def test_output_must_differ_from_input(layout):
    with pytest.raises(UserError, match="must differ"):
        crop_dataset(layout, layout, CropOptions(detector="fixed"))


def test_fixed_detector_box_is_inside_the_image():
    box = FixedBoxDetector().detect([np.zeros((512, 384, 3), np.uint8)])[0].box
    assert 0 <= box[0] < box[2] <= 384 and 0 <= box[1] < box[3] <= 512


def test_rerun_recrops_changed_sources_and_refuses_other_settings(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45"])
    out = tmp_path / "crops"
    crop_dataset(root, out, CropOptions(detector="fixed"))
    write_image(root / "train/images/000001_female_Asian_45/mask1.jpg", colour=(1, 2, 3), size=(40, 50))
    again = crop_dataset(root, out, CropOptions(detector="fixed"))
    assert again.processed == 1 and again.skipped == 7
    with pytest.raises(UserError, match=r"other settings \(margin\)"):
        crop_dataset(root, out, CropOptions(detector="fixed", margin=0.1))
    fresh = crop_dataset(root, out, CropOptions(detector="fixed", margin=0.1), overwrite=True)
    assert fresh.processed == 8


def test_the_crop_folder_names_the_whole_photos_it_was_cut_from_and_a_rerun_from_a_moved_folder_updates_it(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45"])
    out = tmp_path / "crops"
    crop_dataset(root, out, CropOptions(detector="fixed"))
    assert whole_photos_folder(out) == root.resolve()
    assert json.loads((out / "crop.json").read_text())["photos"] == str(root.resolve())
    moved = root.rename(tmp_path / "moved")
    again = crop_dataset(moved, out, CropOptions(detector="fixed"))  # the same photos: nothing cropped again
    assert again.processed == 0 and whole_photos_folder(out) == moved.resolve()
    assert whole_photos_folder(moved) is None  # whole photos: no crop.json


def test_a_crop_mismatch_between_training_and_prediction_is_named_with_the_fix(tmp_path):
    from maskcls.faces.crop import crop_mismatch

    settings = {"detector": "mtcnn", "margin": 0.3, "size": [48, 64], "detector_options": {}}
    run, faces, photos = tmp_path / "run", tmp_path / "faces", tmp_path / "photos"
    for folder in (run, faces, photos):
        folder.mkdir()
    (run / "crop.json").write_text(json.dumps(settings))
    (faces / "crop.json").write_text(json.dumps(settings))
    assert crop_mismatch(run / "crop.json", faces) is None
    assert crop_mismatch(run / "crop.json", photos) == (
        f"was trained on face crops (mtcnn) but {photos} holds whole photos: "
        f"`maskcls crop {photos} OUT --size 48x64 --margin 0.3`"
    )
    assert crop_mismatch(tmp_path / "none.json", faces).startswith("was trained on whole photos but")
    assert crop_mismatch(tmp_path / "none.json", photos) is None
    (faces / "crop.json").write_text(json.dumps({**settings, "margin": 0.2}))
    assert "(margin 0.3 vs 0.2)" in crop_mismatch(run / "crop.json", faces)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes


def test_mtcnn_finds_the_synthetic_faces_in_every_mask_state(synth_small):
    table = detection_table(synth_small, create_detector("mtcnn"))
    assert len(table) == 7 * 32
    swapped = pd.read_csv(synth_small / "truth/corruptions.csv").query("kind == 'swap_incorrect_normal'")
    profile = swapped["profile"].iloc[0]
    shown = table.set_index("path")["state"]
    assert shown[f"train/images/{profile}/incorrect_mask.jpg"] == Mask.NOT_WEAR  # the swap put right
    assert shown[f"train/images/{profile}/normal.jpg"] == Mask.INCORRECT
    assert (table["state"] == Mask.WEAR).sum() == 5 * 32
    answers = pd.read_csv(synth_small / "truth/eval.csv").set_index("ImageID")["age"]
    ages = table.set_index("path")["age"]
    assert [ages[f"eval/images/{image}"] for image in answers.index] == answers.tolist()
    people = pd.read_csv(synth_small / "train/train.csv")
    assert [ages[f"train/images/{path}/mask1.jpg"] for path in people["path"]] == people["age"].tolist()
    per_group = np.bincount(age_groups(table["age"].to_numpy()), minlength=3).tolist()
    assert rates_by_age_group(table)["photos"].tolist() == [*per_group, 224]
    rates = rates_by_state(table)
    # 32 people per state here (>= 90% on 600 people: bench/detection.py); generator 1 found 41%, 31%, 71%
    assert (rates["found"] >= 0.8).all(), rates
    assert (rates["mean IoU found"] > 0.65).all()
