"""``maskcls serve``: the API with FastAPI's test client (good, several and bad uploads), parity
with ``maskcls crop`` + ``maskcls predict``, and the web page driven in headless Chromium."""

import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from maskcls.config import load_config
from maskcls.faces.crop import CropOptions, crop_dataset
from maskcls.inference.inference import Predictor, head_probabilities
from maskcls.inference.predict import PROBABILITY_COLUMNS, predict_dataset
from maskcls.inference.serve import Limits, create_app
from maskcls.synth.generate import SynthSpec, generate_dataset
from maskcls.training.train import fit
from tests.browser import headless_chromium

LIMITS = Limits(max_request_bytes=1_000_000, max_pixels=1_000_000, max_files=4)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Photos -> real MTCNN crop -> a tiny model trained on the crops -> its test predictions."""
    tmp_path = tmp_path_factory.mktemp("serve")
    raw, faces = tmp_path / "raw", tmp_path / "faces"
    generate_dataset(raw, SynthSpec(people=8, eval_people=2, seed=11), workers=2)
    crop_dataset(raw, faces, CropOptions(detector="mtcnn", size=(48, 64), detector_options={"detect_scale": 0.5}))
    config = load_config(
        None,
        [
            f"data.root={faces}", "model.name=test_resnet", "train.epochs=1", "train.image_size=[24,32]",
            f"train.cache_dir={tmp_path / 'cache'}", "train.batch_size=32", "train.folds=2", "name=srv",
        ],
    )  # fmt: skip
    run = fit(config, runs_dir=tmp_path / "runs").folder
    expected = predict_dataset([run], faces, cache_dir=tmp_path / "cache").table.set_index("ImageID")
    predictor = Predictor(run)
    return raw, faces, run, expected, predictor


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served[4], LIMITS))


def eval_photos(raw, count=2):
    paths = sorted((raw / "eval" / "images").iterdir())[:count]
    return [(path.name, path.read_bytes()) for path in paths]


def test_a_photo_gets_the_crop_and_probabilities_of_crop_plus_predict(served, client):
    raw, faces, _, expected, _ = served
    boxes = pd.read_csv(faces / "boxes.csv").set_index("path")
    name, data = eval_photos(raw, 1)[0]
    response = client.post("/predict", files={"file": (name, data, "image/jpeg")})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    recorded = boxes.loc[f"eval/images/{name}"]
    assert result["face_source"] == recorded["status"]
    assert result["face_box"] == pytest.approx(list(recorded[["x0", "y0", "x1", "y1"]]), abs=0.05)
    assert result["crop_box"] == list(recorded[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]])
    probabilities = expected.loc[name, PROBABILITY_COLUMNS].to_numpy(float)
    for head, values in head_probabilities(probabilities).items():
        assert list(result[head].values()) == pytest.approx(values, abs=1e-5)
        assert sum(result[head].values()) == pytest.approx(1, abs=1e-4)
    assert result["class"] == probabilities.argmax() and result["label"].count("/") == 2


def test_several_photos_in_one_request_come_back_in_order(served, client):
    photos = eval_photos(served[0], 3)
    files = [("files", (name, data, "image/jpeg")) for name, data in photos]
    results = client.post("/predict", files=files).json()["results"]
    assert [result["file"] for result in results] == [name for name, _ in photos]
    single = client.post("/predict", files={"file": photos[1][:1] + (photos[1][1], "image/jpeg")}).json()["results"]
    assert results[1]["mask"] == pytest.approx(single[0]["mask"], abs=1e-5)


def png_bytes(width, height, mode="RGB", fmt="PNG"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format=fmt)
    return buffer.getvalue()


def test_bad_uploads_get_a_4xx_json_reason_and_the_server_keeps_going(served, client):
    name, good = eval_photos(served[0], 1)[0]
    cases = {
        "not an image": (400, {"file": ("notes.txt", b"just some text", "text/plain")}, "notes.txt: not a readable"),
        "truncated JPEG": (400, {"file": ("cut.jpg", good[: len(good) // 2], "image/jpeg")}, "truncated"),
        "empty file": (400, {"file": ("empty.jpg", b"", "image/jpeg")}, "empty.jpg: empty file"),
        "too many pixels": (413, {"file": ("huge.png", png_bytes(2000, 1000), "image/png")}, "2000x1000"),
        "GIF": (415, {"file": ("anim.gif", png_bytes(20, 20, "P", "GIF"), "image/gif")}, "GIF images are not"),
        "too large": (413, {"file": ("big.jpg", good + b"\0" * 1_100_000, "image/jpeg")}, "larger than"),
    }
    for what, (status, files, reason) in cases.items():
        response = client.post("/predict", files=files)
        assert response.status_code == status, what
        assert reason in response.json()["error"], what
    too_many = [("files", (f"{k}.jpg", good, "image/jpeg")) for k in range(LIMITS.max_files + 1)]
    assert client.post("/predict", files=too_many).status_code == 400
    empty = client.post("/predict", content=b"", headers={"content-type": "multipart/form-data; boundary=x"})
    assert empty.status_code == 400 and "no photo" in empty.json()["error"]
    assert client.post("/predict", content=b"raw", headers={"content-type": "image/jpeg"}).status_code == 415

    def streamed():  # no Content-Length: stopped while reading
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 50_000

    chunked = client.post("/predict", content=streamed(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 413
    assert client.post("/predict", files={"file": (name, good, "image/jpeg")}).status_code == 200
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["rejected"] >= len(cases) + 3


def test_model_describes_what_is_served(served, client):
    described = client.get("/model").json()
    assert described["name"] == "srv" and described["image_size"] == [24, 32]
    assert described["crop"] == {"detector": "mtcnn", "margin": 0.3, "size": [48, 64]}
    assert len(described["classes"]) == 18 and described["heads"]["age"] == ["<30", "30-59", "60+"]
    page = client.get("/").text
    assert 'id="file"' in page and "http://" not in page and "https://" not in page  # no CDN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(served):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served[4], LIMITS), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_page_in_chromium_shows_the_three_predictions(served, client, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    name, data = eval_photos(served[0], 1)[0]
    with Image.open(io.BytesIO(data)) as image:  # twice the size, so that the page must scale it down
        big = image.convert("RGB").resize((768, 1024), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=92)
    photo = tmp_path / name
    photo.write_bytes(buffer.getvalue())
    expected = client.post("/predict", files={"file": (name, photo.read_bytes(), "image/jpeg")}).json()["results"][0]
    with headless_chromium(1100, 900) as driver:
        driver.get(live_server + "/")
        WebDriverWait(driver, 20).until(lambda d: "test_resnet" in d.find_element(By.ID, "model").text)
        upload = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].hidden = false", upload)
        upload.send_keys(str(photo))
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "photo").get_attribute("data-drawn") == "yes")
        assert driver.find_element(By.ID, "label").text.startswith(expected["label"])
        for head in ("mask", "gender", "age"):
            rows = driver.find_elements(By.CSS_SELECTOR, f"#chart-{head} .bar-row")
            shown = {row.get_attribute("data-name"): float(row.find_element(By.CLASS_NAME, "value").get_attribute(
                "data-value")) for row in rows}  # fmt: skip
            assert shown == pytest.approx(expected[head], abs=1e-6), head
            for row in rows:  # each bar as long as its probability
                bar = row.find_element(By.CLASS_NAME, "bar")
                fill = bar.find_element(By.TAG_NAME, "div")
                share = fill.size["width"] / bar.size["width"]
                assert share == pytest.approx(expected[head][row.get_attribute("data-name")], abs=0.01), head
        canvas = canvas_pixels(driver)
        assert driver.find_element(By.ID, "error").text == ""
        check_photo_and_boxes(canvas, big, expected)

        # the toggle: the class head's map laid over the crop box, at the photo's scale
        Select(driver.find_element(By.ID, "maps")).select_by_value("class")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "photo").get_attribute("data-map") == "class")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "photo").get_attribute("data-drawn") == "yes")
        with_map = canvas_pixels(driver)
        placed = [
            float(value) for value in driver.find_element(By.ID, "photo").get_attribute("data-map-box").split(",")
        ]
    scale = min(420 / big.width, 520 / big.height, 1)
    x0, y0, x1, y1 = (value * scale for value in expected["crop_box"])
    assert [float(value) for value in placed] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.06)  # x, y, w, h
    check_map_drawn(canvas, with_map, [x0, y0, x1, y1])


def check_map_drawn(without: np.ndarray, with_map: np.ndarray, box: list[float]) -> None:
    """Outside the crop box the photo is untouched; inside it the map's colours cover it."""
    x0, y0, x1, y1 = (round(value) for value in box)
    outside = np.ones(without.shape[:2], bool)
    outside[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = False
    assert np.abs(with_map - without)[outside].max() < 1
    assert np.abs(with_map - without)[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4].sum(axis=2).mean() > 20


def test_maps_on_request_are_grad_cam_of_the_served_crop(served, client):
    from maskcls.cam.layers import find_target_layer
    from maskcls.cam.maps import activation_maps
    from maskcls.data.cache import load_resized

    raw, faces, run, _, predictor = served
    name, data = eval_photos(raw, 1)[0]
    plain = client.post("/predict", files={"file": (name, data, "image/jpeg")}).json()["results"][0]
    assert "maps" not in plain  # computed only when asked
    answer = client.post("/predict?maps=array", files={"file": (name, data, "image/jpeg")}).json()["results"][0]
    loaded = predictor.models[0]
    batch = loaded.input_batch(load_resized(faces / "eval/images" / name, loaded.image_size)[None])
    expected = activation_maps(loaded.model, batch, find_target_layer(loaded.model, batch)[1])["class"]
    assert expected.classes[0] == answer["class"]
    np.testing.assert_allclose(np.array(answer["maps"]["class"]), expected.maps[0], atol=6e-4)
    assert set(answer) - set(plain) == {"maps"} and all(answer[key] == plain[key] for key in ("class", "crop_box"))
    picture = client.post("/predict?maps=png", files={"file": (name, data, "image/jpeg")}).json()["results"][0]
    import base64

    png = base64.b64decode(picture["maps"]["class"].removeprefix("data:image/png;base64,"))
    with Image.open(io.BytesIO(png)) as image:
        assert (image.mode, image.size) == ("RGBA", tuple(loaded.image_size))
        alpha = np.asarray(image)[..., 3]
    np.testing.assert_array_equal(
        alpha, (np.clip(np.array(answer["maps"]["class"]), 0, 1) * 0.5 * 255).astype(np.uint8)
    )
    wrong = client.post("/predict?maps=jpeg", files={"file": (name, data, "image/jpeg")})
    assert wrong.status_code == 422 and wrong.json() == {"error": "maps=jpeg: expected png or array"}


def canvas_pixels(driver) -> np.ndarray:
    import base64

    url = driver.execute_script("return document.getElementById('photo').toDataURL('image/png')")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"), dtype=float)


def check_photo_and_boxes(canvas: np.ndarray, photo: Image.Image, result: dict) -> None:
    """The photo fills the canvas at the page's scale, and the crop box (orange, dashed) and the
    face box (green) sit where the API put them."""
    scale = min(420 / photo.width, 520 / photo.height, 1)
    assert canvas.shape[:2] == (round(photo.height * scale), round(photo.width * scale))
    shrunk = np.asarray(photo.resize((canvas.shape[1], canvas.shape[0]), Image.Resampling.BILINEAR), dtype=float)
    assert np.median(np.abs(canvas - shrunk).sum(axis=2)) < 30  # the photo itself, apart from the boxes
    boxes = [(result["crop_box"], (240, 160, 0), 0.4)]
    if result["face_box"]:
        boxes.append((result["face_box"], (26, 152, 80), 0.8))
    for box, colour, least in boxes:
        x0, y0, x1, y1 = (round(value * scale) for value in box)
        left_edge = canvas[y0 + 4 : y1 - 4, min(max(x0, 0), canvas.shape[1] - 1)]
        drawn = (np.abs(left_edge - colour).sum(axis=1) < 60).mean()
        assert drawn >= least, f"box {box} in {colour}: {drawn:.0%} of its left edge drawn"


def test_a_port_in_use_is_named_before_any_model_loads(tmp_path, capsys):
    from tests.helpers import run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli("serve", str(tmp_path / "no-run"), "--port", str(port), capsys=capsys)
    assert code == 2  # and said before the (missing) run is even looked at
    assert f"port {port} on 127.0.0.1 is not free (Address already in use; another maskcls serve?)" in err


@pytest.fixture(scope="module")
def calibrated(served, tmp_path_factory):
    """A copy of the served run with a calibration.json whose biases change some decisions."""
    _, _, run, _, _ = served
    copy = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(run, copy)
    biases = np.random.default_rng(0).uniform(-2, 2, 18).round(1).tolist()
    (copy / "calibration.json").write_text(json.dumps({"biases": biases, "age": None, "source": "test"}))
    return copy


def test_photos_arrays_and_the_service_get_the_calibrated_submission_of_a_group_that_has_one(
    served, calibrated, tmp_path, capsys
):
    raw, faces, _, expected, _ = served
    submission = predict_dataset([calibrated], faces, cache_dir=tmp_path / "cache").table.set_index("ImageID")
    assert (
        submission[PROBABILITY_COLUMNS].to_numpy().argmax(1) != expected[PROBABILITY_COLUMNS].to_numpy().argmax(1)
    ).any()
    photos = sorted((raw / "eval" / "images").iterdir())
    by_paths = Predictor(calibrated).predict_paths(raw / "eval" / "images")
    assert by_paths["path"].tolist() == [str(path) for path in photos]
    names = [path.name for path in photos]
    wanted = submission.loc[names, PROBABILITY_COLUMNS].to_numpy(float)
    assert by_paths["class"].tolist() == wanted.argmax(1).tolist()
    assert by_paths[PROBABILITY_COLUMNS].to_numpy(float) == pytest.approx(wanted, abs=1e-5)
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in photos]
    by_arrays = Predictor(calibrated).predict_arrays(arrays, names=names)
    assert by_arrays[PROBABILITY_COLUMNS].to_numpy(float) == pytest.approx(wanted, abs=1e-5)
    raw_model = Predictor(calibrated, calibration=None).predict_paths(photos)
    assert raw_model[PROBABILITY_COLUMNS].to_numpy(float) == pytest.approx(
        expected.loc[names, PROBABILITY_COLUMNS].to_numpy(float), abs=1e-5
    )
    served_answer = TestClient(create_app(Predictor(calibrated), LIMITS)).post(
        "/predict", files={"file": (names[0], photos[0].read_bytes(), "image/jpeg")}
    )
    assert served_answer.json()["results"][0]["class"] == wanted[0].argmax()


def test_predict_images_reads_folders_recursively_in_any_case_and_writes_one_row_per_photo(served, tmp_path, capsys):
    from tests.helpers import run_cli

    raw, _, run, expected, _ = served
    photos = sorted((raw / "eval" / "images").iterdir())[:3]
    (tmp_path / "photos/deeper").mkdir(parents=True)
    shutil.copy(photos[0], tmp_path / "photos" / "ONE.JPG")
    Image.open(photos[1]).save(tmp_path / "photos/deeper/two.png")
    shutil.copy(photos[2], tmp_path / "photos/deeper/three.jpeg")
    (tmp_path / "photos/notes.txt").write_text("not a photo")
    code, out, _ = run_cli("predict", str(run), "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "o"),
                           "--backend", "torch", "-q", capsys=capsys)  # fmt: skip
    assert code == 0 and "3 photos" in out
    table = pd.read_csv(tmp_path / "o/photo_predictions.csv")
    assert [Path(path).name for path in table["path"]] == ["ONE.JPG", "three.jpeg", "two.png"]
    assert list(table.columns[:6]) == ["path", "class", "mask", "gender", "age", "face"]
    first = expected.loc[photos[0].name, PROBABILITY_COLUMNS].to_numpy(float)
    assert table.loc[0, PROBABILITY_COLUMNS].to_numpy(float) == pytest.approx(first, abs=1e-5)
    code, _, err = run_cli("predict", str(run), "--images", str(tmp_path / "nothing"), capsys=capsys)
    assert code == 2 and f"{tmp_path / 'nothing'}: no such file or folder" in err
    code, _, err = run_cli("predict", str(run), capsys=capsys)
    assert code == 2 and "say what to predict: --data DATASET (its eval/ part) or --images" in err
