"""``report(run_or_group)``: one self-contained HTML page about a run or a cv group.

Learning curves, the confusion matrix as a heat map, per-class and per-attribute F1 bars, the
validation images the model got wrong most confidently (truth and prediction under each), and
the config. Every image is inlined (base64), so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from maskcls.errors import UserError
from maskcls.experiments.page import STYLE, figure_data_uri
from maskcls.figures import (
    age_scatter_figure,
    attribute_f1_figure,
    class_f1_figure,
    confusion_figure,
    learning_curves_figure,
)
from maskcls.files import read_json, write_text_atomic
from maskcls.labels import AGE_ESTIMATE_COLUMN, HEAD_SIZES, PROBABILITY_COLUMNS, class_name
from maskcls.metrics import summary
from maskcls.rundir import names
from maskcls.rundir.folders import read_rows
from maskcls.rundir.tracked import server_page


@dataclass
class Subject:
    """What a report is about: a run (one fold) or a cv group (its folds and OOF predictions)."""

    folder: Path
    kind: str
    config: dict
    curves: dict[str, list[dict]]  # run name -> summary.csv rows
    probabilities: pd.DataFrame  # path, target, p0..p17 (validation or out-of-fold)
    headline: dict[str, str]


def load_subject(folder: str | Path) -> Subject:
    folder = Path(folder)
    if (folder / names.GROUP).exists():
        group = read_json(folder / names.GROUP)
        cv = read_json(folder / names.CV_RESULT, missing={})
        curves = {run: read_rows(folder / run / names.SUMMARY) for run in group["runs"]}
        headline = {
            "kind": f"cv group, {group['folds']} folds",
            "CV macro F1 (out-of-fold)": number(cv.get("oof_f1")),
            "fold F1 mean ± std": f"{number(cv.get('fold_f1_mean'))} ± {number(cv.get('fold_f1_std'))}",
        }
        return Subject(
            folder, "cv", group["config"], curves, read_probabilities(folder, names.OOF_PROBABILITIES), headline
        )
    if (folder / names.CONFIG).exists():
        config = read_json(folder / names.CONFIG)
        result = read_json(folder / names.RESULT, missing={})
        headline = {
            "kind": f"run, fold {config['train']['fold']} of {config['train']['folds']}",
            "best valid macro F1": f"{number(result.get('valid_f1'))}{at_borders(result)} "
            f"at epoch {result.get('best_epoch', '?')}",
            "git commit": str(config.get("git_commit") or "unknown"),
        }
        curves = {folder.name: read_rows(folder / names.SUMMARY)}
        return Subject(folder, "run", config, curves, read_probabilities(folder, names.VALID_PROBABILITIES), headline)
    raise UserError(f"{folder}: not a run folder (config.json) or a cv group (group.json)")


def read_probabilities(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    if not path.exists():
        raise UserError(f"{path}: missing (the run has not finished an epoch yet)")
    return pd.read_csv(path)


def number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def at_borders(result: dict) -> str:
    """A model that estimates the age: its F1 at the borders fitted on the validation rows, which
    chose its best epoch."""
    return f" ({number(result['valid_f1_borders'])} at fitted age borders)" if "valid_f1_borders" in result else ""


# --- the gallery of confident mistakes ---------------------------------------------------------


def confident_mistakes(probabilities: pd.DataFrame, count: int) -> pd.DataFrame:
    """Wrong predictions, the most confident first (confidence = probability of the predicted class)."""
    values = probabilities[PROBABILITY_COLUMNS].to_numpy()
    frame = probabilities[["path", "target"]].copy()
    frame["predicted"] = values.argmax(1)
    frame["confidence"] = values.max(1)
    frame["truth_probability"] = values[np.arange(len(values)), frame["target"].to_numpy()]
    wrong = frame[frame["predicted"] != frame["target"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(count)


def thumbnail_uri(path: Path, size: int = 160) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


MISSING_IMAGE = '<div class="missing">image not found (pass --data)</div>'


def gallery_html(mistakes: pd.DataFrame, data_root: Path) -> str:
    cards = []
    for row in mistakes.itertuples():
        uri = thumbnail_uri(data_root / row.path)
        picture = (
            f'<img src="{uri}" alt="{html.escape(row.path)}">' if uri else '<div class="missing">image not found</div>'
        )
        cards.append(
            f'<figure class="mistake">{picture}<figcaption>'
            f"<b>truth</b> {row.target} {html.escape(class_name(row.target))} (p={row.truth_probability:.2f})<br>"
            f"<b>predicted</b> {row.predicted} {html.escape(class_name(row.predicted))} (p={row.confidence:.2f})<br>"
            f"<small>{html.escape(row.path)}</small></figcaption></figure>"
        )
    return "\n".join(cards) or "<p>No wrong predictions.</p>"


# --- the page ---------------------------------------------------------------------------------


def maps_html(folder: Path, data_root: Path, photos: int = 6) -> str:
    """Per head, a contact sheet of Grad-CAM overlays (most confident right / wrong, most uncertain)
    and, on a synthetic set, the share of the maps on the face; empty when the photos are missing."""
    import tempfile

    from maskcls.experiments.explain import explain

    if not data_root.is_dir():
        return ""
    with tempfile.TemporaryDirectory() as scratch:
        found = explain(folder, data_root, images=photos, out=scratch, measure=200)
        sheets = "".join(
            f'<h3>{head}</h3><img class="chart" id="maps-{head}" alt="Grad-CAM, {head} head" '
            f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}">'
            for head, path in found.sheets.items()
        )
    share = ""
    if found.face_share is not None:
        table = found.face_share
        header = "".join(f"<th>{html.escape(column)}</th>" for column in table.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{'' if pd.isna(value) else html.escape(str(value))}</td>" for value in row) + "</tr>"
            for row in table.itertuples(index=False)
        )
        share = (
            "<p>Share of each head's map inside the true face box (truth/boxes.csv; face_area: what an even map "
            f'would score):</p><table id="face-share"><tr>{header}</tr>{body}</table>'
        )
    return (
        f'<h2>Where the model looks (Grad-CAM at {html.escape(found.layer)})</h2><div id="maps">{share}{sheets}</div>'
    )


def render_report(subject: Subject, data_root: Path, mistakes: int = 24, maps: bool = True) -> str:
    truth = subject.probabilities["target"].to_numpy()
    predicted = subject.probabilities[PROBABILITY_COLUMNS].to_numpy().argmax(1)
    scores = summary(truth, predicted)
    what = "out-of-fold" if subject.kind == "cv" else "validation"
    headline = {
        **subject.headline,
        f"{what} images": str(len(truth)),
        f"{what} accuracy": number(scores["accuracy"]),
        "F1 mask / gender / age": " / ".join(number(scores[f"f1_{head}"]) for head in HEAD_SIZES),
        "data": str(data_root),
    }
    charts = {
        "curves": ("Learning curves", learning_curves_figure(subject.curves)),
        "confusion": ("Confusion matrix", confusion_figure(truth, predicted, f"{what} confusion matrix")),
        "class-f1": ("F1 per class", class_f1_figure(truth, predicted)),
        "attribute-f1": ("F1 per attribute", attribute_f1_figure(truth, predicted)),
    }
    table = subject.probabilities
    if {AGE_ESTIMATE_COLUMN, "age"} <= set(table.columns):
        ages, estimates = table["age"].to_numpy(dtype=float), table[AGE_ESTIMATE_COLUMN].to_numpy(dtype=float)
        headline["age MAE (years)"] = f"{np.abs(estimates - ages).mean():.2f}"
        charts["age"] = ("Age estimate", age_scatter_figure(ages, estimates))
    sections = [
        f'<h2>{title}</h2><img class="chart" id="{key}" alt="{title}" src="{figure_data_uri(figure)}">'
        for key, (title, figure) in charts.items()
    ]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in headline.items())
    page = server_page(subject.folder)
    if page:
        link = f'<a id="tracking" href="{html.escape(page)}">{html.escape(page)}</a>'
        rows += f"<tr><td>tracking server</td><td>{link}</td></tr>"
    gallery = gallery_html(confident_mistakes(subject.probabilities, mistakes), data_root)
    config_text = yaml.safe_dump(subject.config, sort_keys=False)
    name = html.escape(subject.folder.name)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>maskcls report: {name}</title>'
        f"<style>{STYLE}</style></head><body><h1>{name}</h1>"
        f'<table class="headline">{rows}</table>{"".join(sections)}'
        f'<h2>Most confidently wrong {what} images</h2><div class="gallery" id="mistakes">{gallery}</div>'
        f"{maps_html(subject.folder, data_root) if maps else ''}"
        f'<h2>Config</h2><pre id="config">{html.escape(config_text)}</pre></body></html>\n'
    )


def write_report(
    folder: str | Path, out: str | Path | None = None, data_root: str | Path | None = None, maps: bool = True
) -> Path:
    """Render the report of a run, cv group or study (``maskcls tune``) to ``out`` (default
    ``FOLDER/report.html``); ``maps``: with class activation maps per head."""
    if (Path(folder) / names.TUNE).exists():
        from maskcls.experiments.study_report import render_study_report

        target = Path(out) if out is not None else Path(folder) / names.REPORT
        write_text_atomic(target, render_study_report(Path(folder)))
        return target
    subject = load_subject(folder)
    root = Path(data_root) if data_root is not None else Path(subject.config["data"]["root"])
    target = Path(out) if out is not None else subject.folder / names.REPORT
    write_text_atomic(target, render_report(subject, root, maps=maps))
    return target
