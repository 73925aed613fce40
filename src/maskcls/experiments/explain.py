"""``maskcls explain``: class activation maps of a run or a cv group on its validation photos
(or the test photos it predicted), a contact sheet per head (most confident right, most
confident wrong, most uncertain), a table of what was drawn, and, on a synthetic set, how much of
each head's map lies on the true face.

OUT/  HEAD.png        one contact sheet per head (mask, gender, age; ``class`` for one head)
      explain.csv     head, category, rank, path, truth, predicted, confidence, shares on the face
      face_share.csv  per head and true mask state: mean share of the map inside the face box
                      (and, for the mask head, inside its lower half), beside the box's share of
                      the photo's area (what a map spread evenly would score); with truth/boxes.csv only

A cv group's validation photos are each explained by the fold model that held them out (the
model whose prediction the out-of-fold table shows); its test photos by every fold, averaged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.callbacks import Progress
from maskcls.cam.inside import face_boxes, has_face_boxes, share_inside
from maskcls.cam.layers import target_layer
from maskcls.cam.maps import HeadMaps, activation_maps, head_names, mean_maps
from maskcls.cam.overlay import Tile, contact_sheet, overlay
from maskcls.choices import EXPLAIN_SPLITS
from maskcls.data.cache import load_resized
from maskcls.data.layout import eval_image_path
from maskcls.errors import UserError
from maskcls.files import atomic_path
from maskcls.inference.loading import LoadedRun, load_run, run_folders
from maskcls.labels import HEAD_VALUE_NAMES, PROBABILITY_COLUMNS, class_name, decode_classes, head_marginals
from maskcls.rundir import names
from maskcls.rundir.folders import write_rows
from maskcls.rundir.tables import read_probabilities

CATEGORIES = {"right": "most confident right", "wrong": "most confident wrong", "uncertain": "most uncertain"}
BATCH = 32


@dataclass
class HeadView:
    """One head's reading of the probability table: probabilities, predicted class, its
    probability, and the true class (None for test photos)."""

    probabilities: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    truth: np.ndarray | None


@dataclass
class Explained:
    folder: Path
    sheets: dict[str, Path]
    table: Path
    layer: str
    maps: int
    seconds_per_map: float
    face_share: pd.DataFrame | None


@dataclass
class Sample:
    """The photos drawn (sheet rows, and those measured on the face) with their maps."""

    root: Path
    table: pd.DataFrame
    size: tuple[int, int]
    views: dict[str, HeadView]
    chosen: dict[str, dict[str, np.ndarray]]  # head -> category -> table rows, in sheet order
    rows: np.ndarray  # every table row that has maps, sorted
    maps: dict[str, HeadMaps]  # head -> maps of ``rows``, in that order

    def map_of(self, head: str, row: int) -> np.ndarray:
        return self.maps[head].maps[int(np.searchsorted(self.rows, row))]

    def photo(self, row: int) -> np.ndarray:
        return photo(self.root, self.table, row, self.size)


def explain(
    source: str | Path,
    data: str | Path | None = None,
    *,
    images: int = 8,
    out: str | Path | None = None,
    layer: str | None = None,
    split: str = "valid",
    measure: int = 400,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Explained:
    """Sheets of ``images`` photos per category and head, and (with truth/boxes.csv in the data, on
    validation photos) the share of the maps on the face over up to ``measure`` photos."""
    if split not in EXPLAIN_SPLITS:
        raise UserError(f"split {split!r}: expected {' or '.join(EXPLAIN_SPLITS)}")
    if images < 1:
        raise UserError(f"images must be at least 1, got {images}")
    source = Path(source)
    loaded = [load_run(run, device) for run in run_folders([source])]
    root = Path(data) if data is not None else Path(loaded[0].config.data.root)
    table = photo_table(source, split)
    views = {head: head_view(table, head, split) for head in head_names(loaded[0].model)}
    chosen = {head: pick(view, images) for head, view in views.items()}
    on_face = split == "valid" and has_face_boxes(root)
    measured = measured_rows(len(table), measure) if on_face else np.array([], int)
    rows = np.unique(np.concatenate([*(np.concatenate(list(c.values())) for c in chosen.values()), measured]))
    classes = {head: view.predicted[rows] for head, view in views.items()}
    started = time.perf_counter()
    layer_name, maps, models = maps_of_rows(loaded, table, rows, root, classes=classes, layer=layer, progress=progress)
    seconds = time.perf_counter() - started
    sample = Sample(root=root, table=table, size=loaded[0].image_size, views=views, chosen=chosen, rows=rows, maps=maps)
    folder = Path(out) if out is not None else source / ("explain" if split == "valid" else "explain-test")
    shares = face_shares(sample) if on_face else {}
    title = f"{source.name}: {{head}} ({split}, Grad-CAM at {layer_name})"
    sheets = {head: write_sheet(sample, head, folder / f"{head}.png", title.format(head=head)) for head in views}
    write_rows(folder / "explain.csv", drawn_rows(sample, shares))
    summary = face_share_summary(sample, shares, measured) if len(measured) else None
    if summary is not None:
        write_rows(folder / "face_share.csv", summary.to_dict("records"))
    count = len(rows) * len(views) * models
    return Explained(
        folder=folder, sheets=sheets, table=folder / "explain.csv", layer=layer_name, maps=count,
        seconds_per_map=seconds / max(count, 1), face_share=summary,
    )  # fmt: skip


def write_sheet(sample: Sample, head: str, path: Path, title: str) -> Path:
    """The head's contact sheet: one row per category, each photo with its map and caption."""
    view = sample.views[head]
    pictures = {
        CATEGORIES[category]: [
            Tile(overlay(sample.photo(row), sample.map_of(head, row)), caption(head, view, row)) for row in picked
        ]
        for category, picked in sample.chosen[head].items()
    }
    columns = max([len(picked) for picked in sample.chosen[head].values()] or [1])
    return save_png(contact_sheet(pictures, title, max(columns, 1)), path)


def drawn_rows(sample: Sample, shares: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """explain.csv: what each tile of each sheet shows."""
    lines = []
    for head, view in sample.views.items():
        for category, picked in sample.chosen[head].items():
            for rank, row in enumerate(picked):
                position = int(np.searchsorted(sample.rows, row))
                lines.append({
                    "head": head, "category": category, "rank": rank + 1, "path": sample.table["path"].iloc[row],
                    "truth": None if view.truth is None else value_name(head, view.truth[row]),
                    "predicted": value_name(head, view.predicted[row]),
                    "confidence": round(float(view.confidence[row]), 6),
                    **{key: round_or_none(values[position]) for key, values in shares.get(head, {}).items()},
                })  # fmt: skip
    return lines


def photo_table(source: Path, split: str) -> pd.DataFrame:
    """The photos with the probabilities the run or group gave them: validation / out-of-fold
    (with ``target``) or test (``ImageID``, from ``maskcls predict``)."""
    if split == "test":
        path = source / names.TEST_PROBABILITIES
        if not path.exists():
            raise UserError(f"{path}: not found; run `maskcls predict {source} --data DATA` first")
        table = read_probabilities(path)
        return table.assign(path=table["ImageID"].astype(str).map(eval_image_path))
    group = names.kind(source) is names.Kind.GROUP
    return read_probabilities(source / (names.OOF_PROBABILITIES if group else names.VALID_PROBABILITIES))


def head_view(table: pd.DataFrame, head: str, split: str) -> HeadView:
    probabilities = table[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64)
    if head != "class":
        probabilities = head_marginals(probabilities)[head]
    predicted = probabilities.argmax(axis=1)
    truth = None
    if split == "valid":
        target = table["target"].to_numpy()
        truth = target if head == "class" else dict(zip(HEAD_VALUE_NAMES, decode_classes(target), strict=True))[head]
    return HeadView(probabilities, predicted, probabilities.max(axis=1), truth)


def pick(view: HeadView, count: int) -> dict[str, np.ndarray]:
    """Row indices per category; without the truth (test photos) only the most uncertain and the
    most confident (shown as ``right``: what the model is surest of)."""
    by_confidence = np.argsort(-view.confidence, kind="stable")
    if view.truth is None:
        return {"right": by_confidence[:count], "uncertain": by_confidence[::-1][:count]}
    correct = view.predicted == view.truth
    return {
        "right": by_confidence[correct[by_confidence]][:count],
        "wrong": by_confidence[~correct[by_confidence]][:count],
        "uncertain": by_confidence[::-1][:count],
    }


def measured_rows(total: int, limit: int) -> np.ndarray:
    """An even spread of at most ``limit`` rows (every k-th), the same on every call."""
    if limit <= 0 or total == 0:
        return np.array([], int)
    return np.unique(np.linspace(0, total - 1, min(limit, total)).round().astype(int))


def maps_of_rows(
    loaded: list[LoadedRun], table: pd.DataFrame, rows: np.ndarray, root: Path, *, classes, layer, progress
) -> tuple[str, dict[str, HeadMaps], int]:
    """Every head's maps of ``rows``: by the fold that held each row out (out-of-fold rows of a
    group), else by the one model or the mean of all; also the layer's name and the number of
    models that made each map."""
    by_fold = len(loaded) > 1 and "fold" in table.columns
    folds = table["fold"].to_numpy()[rows] if by_fold else np.zeros(len(rows), int)
    parts: dict[str, list] = {}
    done, layer_name = 0, ""
    for fold in np.unique(folds):
        models = [loaded[int(fold)]] if by_fold else loaded
        positions = np.flatnonzero(folds == fold)
        for start in range(0, len(positions), BATCH):
            batch_positions = positions[start : start + BATCH]
            wanted = {head: values[batch_positions] for head, values in classes.items()}
            found = []
            for model in models:
                batch = model.input_batch(
                    np.stack([photo(root, table, row, model.image_size) for row in rows[batch_positions]])
                )
                layer_name, module = target_layer(model.model, batch[:1], layer)
                found.append(activation_maps(model.model, batch, module, wanted))
            for head, head_maps in (mean_maps(found) if len(found) > 1 else found[0]).items():
                parts.setdefault(head, []).append((batch_positions, head_maps))
            done += len(batch_positions)
            if progress:
                progress(done, len(rows))
    maps = {head: ordered(pieces, len(rows)) for head, pieces in parts.items()}
    return layer_name, maps, 1 if by_fold else len(loaded)


def ordered(pieces: list[tuple[np.ndarray, HeadMaps]], count: int) -> HeadMaps:
    first = pieces[0][1]
    maps = np.zeros((count, *first.maps.shape[1:]), np.float32)
    probabilities = np.zeros((count, first.probabilities.shape[1]))
    classes = np.zeros(count, int)
    for positions, head_maps in pieces:
        maps[positions], probabilities[positions], classes[positions] = (
            head_maps.maps, head_maps.probabilities, head_maps.classes,
        )  # fmt: skip
    return HeadMaps(classes, probabilities, maps)


def photo(root: Path, table: pd.DataFrame, row: int, size: tuple[int, int]) -> np.ndarray:
    return load_resized(root / table["path"].iloc[row], size)


def face_shares(sample: Sample) -> dict[str, dict[str, np.ndarray]]:
    """Per head and per row of ``sample.rows``: the map's share inside the true face box, the box's
    share of the picture (``face_area``: what an even map scores), and for the mask head both
    again for the face's lower half."""
    boxes = face_boxes(sample.root, sample.table["path"].iloc[sample.rows].tolist(), sample.size)
    even = np.ones_like(next(iter(sample.maps.values())).maps)
    found = {
        head: {"face_share": share_inside(head_maps.maps, boxes), "face_area": share_inside(even, boxes)}
        for head, head_maps in sample.maps.items()
    }
    if "mask" in found:
        found["mask"]["lower_face_share"] = share_inside(sample.maps["mask"].maps, boxes, lower_half=True)
        found["mask"]["lower_face_area"] = share_inside(even, boxes, lower_half=True)
    return found


def face_share_summary(sample: Sample, shares, measured: np.ndarray) -> pd.DataFrame:
    """Mean shares per head and true mask state (``all``: every measured photo)."""
    positions = np.searchsorted(sample.rows, measured)
    states = decode_classes(sample.table["target"].to_numpy()[measured])[0]
    lines = []
    for head, values in shares.items():
        for state in [None, *range(len(HEAD_VALUE_NAMES["mask"]))]:
            keep = positions if state is None else positions[states == state]
            line = {"head": head, "mask_state": "all" if state is None else HEAD_VALUE_NAMES["mask"][state]}
            line["photos"] = len(keep)
            for key, array in values.items():
                line[key] = round(float(np.nanmean(array[keep])), 4) if len(keep) else None
            lines.append(line)
    return pd.DataFrame(lines)


def value_name(head: str, value: int) -> str:
    return class_name(int(value)) if head == "class" else HEAD_VALUE_NAMES[head][int(value)]


def caption(head: str, view: HeadView, row: int) -> str:
    predicted = value_name(head, view.predicted[row])
    said = predicted if view.truth is None else f"{value_name(head, view.truth[row])} -> {predicted}"
    return f"{said} {view.confidence[row]:.2f}"


def round_or_none(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def save_png(image, path: Path) -> Path:
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return path
