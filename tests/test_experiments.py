"""Experiment management: one-key sweeps, the runs table (diff columns, xlsx), TensorBoard
hparams, and the HTML report rendered in headless Chromium."""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.config import load_config
from maskcls.errors import UserError
from maskcls.experiments.catalog import (  # noqa: I001
    Entry,
    differing_keys,
    filter_entries,
    find_entries,
    refresh_hparams,
    sort_entries,
    table_columns,
    table_rows,
    write_hparams,
    write_xlsx,
)
from maskcls.experiments.cv import cross_validate
from maskcls.experiments.report import write_report
from maskcls.experiments.sweep import parse_vary, plan_sweep, run_sweep
from maskcls.labels import PROBABILITY_COLUMNS
from maskcls.metrics import summary
from tests.browser import headless_chromium
from tests.helpers import run_cli
from tests.helpers import tiny_config as shared_tiny_config


def tiny_config(data, tmp_path, *overrides):
    return shared_tiny_config(data, tmp_path, "train.folds=5", "name=tiny", *overrides)


@pytest.fixture(scope="module")
def swept(synth_small, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    runs = tmp_path / "runs"
    messages = []
    folder = run_sweep(
        tiny_config(synth_small, tmp_path),
        [parse_vary("optim.lr=1e-3,3e-3")],
        runs_dir=runs,
        on_variant=lambda index, total, variant, what: messages.append((variant.name, what)),
    )
    return tmp_path, runs, folder, messages


def entry(name, **config):
    return Entry(name, None, "run", None, "", "0/5", "finished", config)


def test_differing_keys_are_those_not_equal_everywhere():
    entries = [entry("a", lr=1, epochs=4, seed=0), entry("b", lr=2, epochs=4, seed=0), entry("c", lr=1, epochs=4)]
    assert differing_keys(entries) == ["lr", "seed"]  # seed: missing in c counts as different
    assert differing_keys(entries[:1]) == []
    assert differing_keys([entry("a", lr=0.1, mix=[1, 2]), entry("b", lr=0.1, mix=[1, 2])]) == []


def test_sweep_trains_one_run_per_value_then_resumes_without_retraining(swept, synth_small):
    tmp_path, runs, folder, messages = swept
    assert [what for _, what in messages if what != "starting"] == ["trained", "trained"]
    variants = sorted(path.name for path in folder.iterdir() if path.is_dir())
    assert variants == ["tiny-lr_1e-3", "tiny-lr_3e-3"]
    for name, lr in (("tiny-lr_1e-3", 0.001), ("tiny-lr_3e-3", 0.003)):
        config = json.loads((folder / name / "config.json").read_text())
        assert config["optim"]["lr"] == lr and config["seed"] == 0 and config["train"]["fold"] == 0
    stamp = (folder / "tiny-lr_1e-3" / "best.pt").stat().st_mtime_ns
    again = []
    elsewhere = tiny_config(synth_small, tmp_path / "other", "train.threads=1", "train.device=cpu")  # machine settings
    run_sweep(
        elsewhere, [parse_vary("optim.lr=1e-3,3e-3")], runs_dir=runs,
        on_variant=lambda index, total, variant, what: again.append(what),
    )  # fmt: skip
    assert again.count("already finished") == 2
    assert (folder / "tiny-lr_1e-3" / "best.pt").stat().st_mtime_ns == stamp
    other_base = tiny_config(synth_small, tmp_path, "optim.weight_decay=0.05")
    with pytest.raises(UserError) as refused:
        run_sweep(other_base, [parse_vary("optim.lr=1e-3,3e-3")], runs_dir=runs)
    assert str(refused.value) == (
        f"{folder}: holds a sweep with another base (optim.weight_decay 0.01 there, 0.05 here); to start another "
        "sweep, give the base another name (-o name=...)"
    )


def test_a_sweep_grows_by_values_and_a_study_by_trials(tmp_path):
    from maskcls.experiments.sweep import record_plan
    from maskcls.experiments.tune import TunePlan
    from maskcls.experiments.tune import record_plan as record_study

    base = load_config(None, ["name=g"])
    record_plan(tmp_path / "s", base, [parse_vary("optim.lr=1e-3,3e-3")], grid=False, folds=None)
    record_plan(tmp_path / "s", base, [parse_vary("optim.lr=3e-3,1e-2")], grid=False, folds=None)  # one more value
    assert json.loads((tmp_path / "s/sweep.json").read_text())["vary"] == {"optim.lr": ["1e-3", "3e-3", "1e-2"]}
    with pytest.raises(
        UserError, match=r"holds a sweep with another vary \(optim.lr \['1e-3', '3e-3', '1e-2'\] there, None"
    ):
        record_plan(tmp_path / "s", base, [parse_vary("train.epochs=1,2")], grid=False, folds=None)
    stored = json.loads((tmp_path / "s/sweep.json").read_text())
    stored["base"]["train"].update(cache_dir="/old/cache", device="cpu")  # as plans were written before
    (tmp_path / "s/sweep.json").write_text(json.dumps(stored))
    record_plan(tmp_path / "s", base, [parse_vary("optim.lr=1e-3")], grid=False, folds=None)  # the same recipe
    record_study(tmp_path / "t", TunePlan(base=base, space=[], trials=3))
    record_study(tmp_path / "t", TunePlan(base=base, space=[], trials=8))  # the same search, more trials
    assert json.loads((tmp_path / "t/tune.json").read_text())["trials"] == 8
    with pytest.raises(UserError, match=r"holds a study with another pruner \('median' there, 'none' here\); to"):
        record_study(tmp_path / "t", TunePlan(base=base, space=[], trials=8, pruner="none"))


def test_sweep_refuses_two_keys_unless_grid(synth_small, tmp_path, capsys):
    base = tiny_config(synth_small, tmp_path)
    varied = [parse_vary("optim.lr=1e-3,3e-4"), parse_vary("train.epochs=1,2")]
    with pytest.raises(UserError, match="--grid"):
        plan_sweep(base, varied)
    grid = plan_sweep(base, varied, grid=True)
    assert [variant.name for variant in grid] == [
        "tiny-lr_1e-3-epochs_1", "tiny-lr_1e-3-epochs_2", "tiny-lr_3e-4-epochs_1", "tiny-lr_3e-4-epochs_2",
    ]  # fmt: skip
    assert grid[3].config.optim.lr == 3e-4 and grid[3].config.train.epochs == 2
    code, _, err = run_cli(
        "sweep", "--vary", "optim.lr=1e-3,3e-4", "--vary", "seed=1,2", "-o", f"data.root={synth_small}",
        "--runs-dir", str(tmp_path / "runs"), "configs/cpu-demo.yaml", capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "changes 2 keys (optim.lr, seed)" in err and not (tmp_path / "runs").exists()


def test_sweep_names_bad_keys_and_values(synth_small, tmp_path):
    base = tiny_config(synth_small, tmp_path)
    with pytest.raises(UserError, match="did you mean 'optim.lr'"):
        plan_sweep(base, [parse_vary("optim.lrr=1,2")])
    with pytest.raises(UserError, match="keeps data.root fixed"):
        plan_sweep(base, [parse_vary("data.root=a,b")])
    with pytest.raises(UserError, match="tiny-epochs_x: train.epochs"):
        plan_sweep(base, [parse_vary("train.epochs=2,x")])
    assert parse_vary("train.image_size=[24,32],[48,64]").values == [[24, 32], [48, 64]]


def test_runs_table_filters_sorts_and_exports(swept, capsys):
    _, runs, _, _ = swept
    entries = find_entries(runs)
    columns = table_columns(entries)
    assert [column for column in columns if "." in column or column == "seed"] == ["optim.lr"]
    assert [e.name for e in filter_entries(entries, ["optim.lr=3e-3"])] == ["tiny-sweep-lr/tiny-lr_3e-3"]
    assert len(filter_entries(entries, ["name=*lr_1e-3"])) == 1
    with pytest.raises(UserError, match="did you mean 'optim.lr'"):
        filter_entries(entries, ["optim.lrr=1"])
    with pytest.raises(UserError, match=r"where 'optim.lr': expected KEY=VALUE, e.g. optim.name=adamw"):
        filter_entries(entries, ["optim.lr"])
    best_first = sort_entries(entries, "valid_f1", columns)
    assert [e.valid_f1 for e in best_first] == sorted((e.valid_f1 for e in entries), reverse=True)
    for entry in entries:  # the table's F1 is the run's own best epoch
        summary = pd.read_csv(runs / entry.name / "summary.csv")
        assert entry.valid_f1 == pytest.approx(summary["valid_f1"].max())
    code, out, _ = run_cli("runs", "--dir", str(runs), "--format", "csv", "--sort", "optim.lr", capsys=capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["optim.lr"] for row in rows] == ["0.001", "0.003"]
    assert {row["status"] for row in rows} == {"finished"} and all(float(row["valid_f1"]) >= 0 for row in rows)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = next(line for line in readme.splitlines() if line.startswith("maskcls runs --sort f1 --where"))
    wheres = re.findall(r'--where "?([^" ]+)"?', example)  # the README's own filters match the runs they name
    assert wheres == ["optim.name=adamw", "model.name=*resnet*"] and len(filter_entries(entries, wheres)) == 2


def test_xlsx_round_trip(swept, tmp_path):
    from openpyxl import load_workbook

    _, runs, _, _ = swept
    entries = find_entries(runs)
    columns = table_columns(entries)
    rows = table_rows(entries, columns)
    write_xlsx(rows, columns, tmp_path / "runs.xlsx")
    sheet = load_workbook(tmp_path / "runs.xlsx").active
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == columns
    assert [dict(zip(columns, row, strict=True)) for row in values[1:]] == rows
    assert sheet.freeze_panes == "B2"


def test_hparams_hold_the_differing_keys_and_scores(swept):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, runs, _, _ = swept
    entries = find_entries(runs)
    assert (runs / "hparams" / entries[1].name).is_dir()  # training refreshed it already
    (runs / "hparams" / "deleted-run").mkdir()
    (runs / "hparams" / "deleted-run" / "events.out.tfevents.1.x").write_bytes(b"")
    write_hparams(runs, entries, differing_keys(entries))
    refresh_hparams(runs)  # rewritten, not appended; runs that are gone are dropped
    assert not (runs / "hparams" / "deleted-run").exists()
    folder = runs / "hparams" / entries[1].name
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
    assert set(info.hparams) == {"optim.lr", "kind"}
    assert info.hparams["optim.lr"].number_value == pytest.approx(entries[1].config["optim.lr"])
    f1 = events.Scalars("hparam/valid_f1")[0].value
    assert f1 == pytest.approx(entries[1].valid_f1, abs=1e-6)


def chart_is_drawn(screenshot, element) -> bool:
    """The screenshot's pixels where the chart lies are not blank: several colours, some dark."""
    scale = screenshot.size[0] / element["viewport_width"]
    box = [round(element[key] * scale) for key in ("left", "top", "right", "bottom")]
    pixels = np.asarray(screenshot.convert("RGB").crop(box), dtype=float)
    return pixels.size > 0 and pixels.std() > 20 and (pixels.mean(axis=2) < 100).mean() > 0.005


def render(driver, page, screenshot_path):
    driver.get(page.resolve().as_uri())
    driver.set_window_size(1200, driver.execute_script("return document.body.scrollHeight") + 200)
    images = driver.execute_script(
        "return Array.from(document.images).map(i => { const r = i.getBoundingClientRect();"
        " return {id: i.id, ok: i.complete && i.naturalWidth > 0, left: r.left, top: r.top, right: r.right,"
        " bottom: r.bottom, viewport_width: window.innerWidth}; })"
    )
    driver.save_screenshot(str(screenshot_path))
    return images, Image.open(screenshot_path)


def test_report_renders_in_chromium(swept, synth_small, tmp_path):
    _, _, folder, _ = swept
    group = cross_validate(
        tiny_config(synth_small, tmp_path, "train.folds=2", "name=rep"), runs_dir=tmp_path / "runs"
    ).folder
    pages = [write_report(folder / "tiny-lr_3e-3"), write_report(group, tmp_path / "group.html")]
    text = pages[1].read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "CV macro F1 (out-of-fold)" in text and "rep-cv2" in text
    with headless_chromium() as driver:
        for index, page in enumerate(pages):
            images, screenshot = render(driver, page, tmp_path / f"report{index}.png")
            charts = {image["id"]: image for image in images if image["id"]}
            assert set(charts) == {"curves", "confusion", "class-f1", "attribute-f1", "maps-class"}  # one head: class
            assert all(image["ok"] for image in images), "an inlined image did not load"
            assert len(images) > 4, "the gallery of confident mistakes is empty"
            for name, chart in charts.items():
                assert chart_is_drawn(screenshot, chart), f"{page}: chart {name} is blank in the screenshot"
            assert "optim" in driver.find_element("id", "config").text
            shares = driver.find_elements("css selector", "#face-share tr")  # the synthetic set has truth/boxes.csv
            assert [row.text.split()[:2] for row in shares[1:]] == [
                ["class", "all"], ["class", "wear"], ["class", "incorrect"], ["class", "not"],
            ]  # fmt: skip
            headline = {
                row.find_elements("tag name", "td")[0].text: row.find_elements("tag name", "td")[1].text
                for row in driver.find_elements("css selector", "table.headline tr")
            }
            check_headline(headline, index, folder / "tiny-lr_3e-3", group)
            captions = [figure.text for figure in driver.find_elements("css selector", "#mistakes figure")]
            check_gallery(captions, group if index else folder / "tiny-lr_3e-3", index)


def check_headline(headline: dict, index: int, run, group) -> None:
    """The numbers at the top are the ones in the run's own files."""
    if index == 0:
        result = json.loads((run / "result.json").read_text())
        assert headline["best valid macro F1"] == f"{result['valid_f1']:.4f} at epoch {result['best_epoch']}"
        probabilities = pd.read_csv(run / "valid_probabilities.csv")
    else:
        cv = json.loads((group / "cv.json").read_text())
        assert headline["CV macro F1 (out-of-fold)"] == f"{cv['oof_f1']:.4f}"
        assert headline["fold F1 mean ± std"] == f"{cv['fold_f1_mean']:.4f} ± {cv['fold_f1_std']:.4f}"
        probabilities = pd.read_csv(group / "oof_probabilities.csv")
    scores = summary(probabilities["target"].to_numpy(), probabilities[PROBABILITY_COLUMNS].to_numpy().argmax(1))
    what = "out-of-fold" if index else "validation"
    assert headline[f"{what} accuracy"] == f"{scores['accuracy']:.4f}"
    parts = " / ".join(f"{scores[f'f1_{head}']:.4f}" for head in ("mask", "gender", "age"))
    assert headline["F1 mask / gender / age"] == parts


def check_gallery(captions: list[str], folder, index: int) -> None:
    """The mistakes shown are the most confident wrong predictions, most confident first."""
    probabilities = pd.read_csv(folder / ("oof_probabilities.csv" if index else "valid_probabilities.csv"))
    values = probabilities[PROBABILITY_COLUMNS].to_numpy()
    wrong = probabilities.assign(confidence=values.max(1), predicted=values.argmax(1))
    wrong = wrong[wrong["predicted"] != wrong["target"]].sort_values("confidence", ascending=False, kind="stable")
    expected = list(wrong["path"].head(24))
    assert [caption.splitlines()[-1] for caption in captions] == expected


def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli("report", str(tmp_path), capsys=capsys)
    assert code == 2 and "not a run folder" in err


def test_f1_sort_and_best_marks_compare_like_with_like():
    from datetime import datetime

    from maskcls.experiments.catalog import Entry, best_entries

    def entry(name, valid_f1, cv_f1=None):
        kind = "cv" if cv_f1 is not None else "run"
        return Entry(
            name, Path(name), kind, datetime(2026, 1, 1), None, "3", "finished", valid_f1=valid_f1, cv_f1=cv_f1
        )

    entries = [entry("lucky-fold", 0.90), entry("cv-a", 0.70, 0.65), entry("run-b", 0.60), entry("cv-b", 0.72, 0.68)]
    ordered = sort_entries(entries, "f1", table_columns(entries))
    assert [e.name for e in ordered] == ["cv-b", "cv-a", "lucky-fold", "run-b"]  # one fold's 0.90 is not a CV F1
    assert best_entries(entries) == {"cv-b": "best CV", "lucky-fold": "best run"}


def test_machine_settings_are_not_part_of_a_recipe(synth_small, tmp_path):
    from maskcls.config import recipe_dict
    from maskcls.experiments.catalog import recipe
    from maskcls.experiments.cv import start_group

    here = tiny_config(synth_small, tmp_path, "train.folds=3")
    elsewhere = tiny_config(synth_small, tmp_path / "b", "train.folds=3", "train.device=cpu", "train.threads=1")
    elsewhere.data.cache = False
    assert recipe_dict(here) == recipe_dict(elsewhere) and "cache_dir" not in recipe_dict(here)["train"]
    group = tmp_path / "runs" / "tiny"
    assert start_group(here, group) == group
    assert start_group(elsewhere, group) == group  # another cache folder, device or threads: the same group
    elsewhere.optim.lr = 0.01
    with pytest.raises(UserError, match="a cv group with another config already uses this name"):
        start_group(elsewhere, group)
    flat = recipe(here.model_dump(mode="json"))
    assert not {"train.device", "train.threads", "train.cache_dir", "data.cache"} & set(flat)
    assert flat["optim.lr"] == here.optim.lr


def test_the_runs_table_shows_the_cv_f1_score_put_beside_the_newest_scored_submission(tmp_path):
    import os
    from datetime import datetime

    from maskcls.experiments.catalog import Entry, add_scores

    older = tmp_path / "submission-hard.score.json"
    older.write_text(json.dumps({"validation_f1": 0.5, "public": {"f1": 0.1}, "private": {"f1": 0.2}}))
    os.utime(older, (1, 1))
    scored = {"validation_f1": 0.72, "calibrated_by": "c.json", "public": {"f1": 0.75}, "private": {"f1": 0.8}}
    (tmp_path / "submission.score.json").write_text(json.dumps(scored))
    entry = Entry("g", tmp_path, "cv", datetime(2026, 1, 1), None, "3", "finished", cv_f1=0.64)
    add_scores(entry)
    assert (entry.cv_f1, entry.scored_cv_f1, entry.public_f1, entry.private_f1) == (0.64, 0.72, 0.75, 0.8)
    assert entry.scored == "submission.csv"
