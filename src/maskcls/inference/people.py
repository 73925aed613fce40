"""Person-consistent prediction: the test set holds 7 photos of each person under hashed names.

Photos are grouped into people, then gender and age, which do not change inside a person, are
voted over the group while each photo keeps its own mask prediction. Opt-in
(``predict --group-people``), and applied only where the same grouping, tried on held-out
training people whose answers are known, raises the macro F1 (:func:`check_on_held_out`).

The identity signal is not the classifier's embedding (trained to see the mask, gender and age
alike in everybody, it tells people apart badly: purity 0.37-0.41). It is each photo's *colour
layout*: a 16 x 12 grid of mean colours of the photo as the model sees it (a face crop keeps the
hair, the skin, the backdrop around the head and the collar) and, for face crops whose whole
photos are still in the folder ``maskcls crop`` read them from (its ``crop.json`` names it), the
same grid of the whole photo (the backdrop and the clothes), each with the photo's brightness
and contrast taken out, projected onto the few directions that best tell the training persons
apart (linear discriminant analysis on the training photos, whose persons their folders name).
The 7 photos of a real person were taken in one setting, so the backdrop and the clothes are
part of who they are in this data; in the synthetic sets they are drawn per person unless
``maskcls synth --setting photo`` draws them per photo, which leaves the face alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.data.cache import cached_images
from maskcls.data.layout import Dataset, read_dataset
from maskcls.errors import UserError
from maskcls.evaluation.calibrate import Calibration, fitted_on_runs, held_out_classes
from maskcls.faces.crop import whole_photos_folder
from maskcls.files import read_json
from maskcls.labels import AGE_ESTIMATE_COLUMN, NUM_CLASSES, PROBABILITY_COLUMNS, head_marginals, split_outputs
from maskcls.metrics import macro_f1, share_of_resamples_better
from maskcls.rundir import names

log = logging.getLogger("maskcls")

PHOTOS_PER_PERSON = 7
LAYOUT_SIZE = (48, 64)  # width, height the photos are read at for their colour layout
LAYOUT_GRID = (16, 12)  # rows, columns of the grid of mean colours
IDENTITY_DIMENSIONS = 32  # directions kept from the discriminant analysis
WITHIN_SHRINKAGE = 0.5  # of the within-person covariance (IdentitySpace)
SURE_ENOUGH = 0.75  # the vote is applied when it wins in this share of resamples of the held-out people:
# where the grouping failed (face crops alone) the check stood near 50%; on the 600-person sets every
# group it put between 75% and 90% gained on all test photos where measured (README, person-consistent prediction)


def colour_layouts(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per photo (uint8, N x H x W x 3, H and W multiples of the grid): the grid's mean colours
    after subtracting the photo's mean colour and dividing by its spread (a camera's brightness,
    contrast and colour cast), followed by that mean colour over the spread. Read ``chunk`` photos
    at a time (a competition's 18,900 photos as floats at once would take 0.7 GB)."""
    parts = [layouts_of(np.asarray(images[start : start + chunk])) for start in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, 3 * LAYOUT_GRID[0] * LAYOUT_GRID[1] + 3), np.float32)


def layouts_of(images: np.ndarray) -> np.ndarray:
    rows, columns = LAYOUT_GRID
    count, height, width, _ = images.shape
    pixels = images.astype(np.float32) / 255
    cells = pixels.reshape(count, rows, height // rows, columns, width // columns, 3).mean(axis=(2, 4))
    cells = cells.reshape(count, rows * columns, 3)
    mean = cells.mean(axis=1, keepdims=True)
    centred = cells - mean
    spread = np.maximum(np.sqrt((centred**2).mean(axis=(1, 2), keepdims=True)), 1e-3)
    return np.concatenate([(centred / spread).reshape(count, -1), (mean / spread).reshape(count, 3)], axis=1)


def identity_layouts(root: Path, paths: list[str], cache_dir, whole: Path | None) -> np.ndarray:
    """Colour layouts of the photos ``paths`` of ``root`` as the model sees them, followed by those
    of the same paths in ``whole`` (the whole photos they were cut from) when given."""
    layouts = colour_layouts(cached_images(root, paths, LAYOUT_SIZE, cache_dir))
    if whole is None:
        return layouts
    return np.concatenate([layouts, colour_layouts(cached_images(whole, paths, LAYOUT_SIZE, cache_dir))], axis=1)


def whole_photos(root: Path, paths: list[str]) -> Path | None:
    """The folder holding the whole photos of the face crops ``paths`` of ``root``; None for whole
    photos, for crops whose ``crop.json`` does not name it, or (with a warning) when that folder
    no longer holds every one of them."""
    folder = whole_photos_folder(root)
    if folder is None or all((folder / path).is_file() for path in paths):
        return folder
    log.warning(
        f"--group-people: {folder}, which {root} was cropped from, no longer holds all its photos: the people "
        "are told apart by the face crops alone"
    )
    return None


class IdentitySpace:
    """The directions of the colour layouts that tell persons apart, learnt from photos whose
    persons are known: linear discriminant analysis, the generalised eigenvectors of the spread
    between persons against the spread of photos around their person's mean. Both are covariances
    of standardised layouts, shrunk towards their diagonal's mean: the total one as Ledoit and
    Wolf estimate, the within-person one (pooled over persons) by ``WITHIN_SHRINKAGE``. Purity on
    held-out training people is that of scikit-learn's estimator, which shrinks one covariance per
    person (0.810 / 0.980 against 0.811 / 0.978 from the crops / with the whole photos on a
    600-person set, 0.840 / 0.981 against 0.846 / 0.982 on the demo's), in a few seconds instead of
    minutes: its cost grows with the persons times the layout's length squared."""

    def __init__(self, layouts: np.ndarray, persons: np.ndarray):
        from scipy.linalg import eigh

        distinct = len(np.unique(persons))
        if distinct < 2:
            raise ValueError("the identity space needs photos of at least 2 persons")
        layouts = np.asarray(layouts, dtype=np.float64)
        within = shrunk_covariance(layouts - cluster_means(layouts, persons), WITHIN_SHRINKAGE)
        between = shrunk_covariance(layouts - layouts.mean(axis=0)) - within
        dimensions = min(IDENTITY_DIMENSIONS, distinct - 1, layouts.shape[1])
        count = layouts.shape[1]
        _, vectors = eigh(between, within, subset_by_index=[count - dimensions, count - 1])
        self.directions = vectors[:, ::-1]  # the most telling direction first

    def project(self, layouts: np.ndarray) -> np.ndarray:
        return np.asarray(layouts, dtype=np.float64) @ self.directions


def shrunk_covariance(centred: np.ndarray, shrinkage: float | None = None) -> np.ndarray:
    """The covariance of centred rows, estimated on each column divided by its spread and shrunk
    towards its diagonal's mean: by ``shrinkage``, or as Ledoit and Wolf estimate when None."""
    from sklearn.covariance import empirical_covariance, ledoit_wolf
    from sklearn.covariance import shrunk_covariance as shrunk

    spread = centred.std(axis=0)
    spread[spread == 0] = 1.0
    standardised = centred / spread
    if shrinkage is None:
        covariance, _ = ledoit_wolf(standardised, assume_centered=True)
    else:
        covariance = shrunk(empirical_covariance(standardised, assume_centered=True), shrinkage)
    return spread[:, None] * covariance * spread[None, :]


def cluster_people(points: np.ndarray, per_person: int = PHOTOS_PER_PERSON) -> np.ndarray:
    """Cluster ids: agglomerative clustering (Ward) into ``len / per_person`` groups."""
    from sklearn.cluster import AgglomerativeClustering

    count = len(points)
    groups = max(1, round(count / per_person))
    if groups >= count:
        return np.arange(count)
    return AgglomerativeClustering(n_clusters=groups, linkage="ward").fit_predict(points)


def group_photos(known_layouts: np.ndarray, known_persons: np.ndarray, layouts: np.ndarray) -> np.ndarray:
    """Cluster ids of the photos of ``layouts``, in the identity space of the known photos."""
    return cluster_people(IdentitySpace(known_layouts, known_persons).project(layouts))


def vote_in_people(probabilities: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each photo's own mask probabilities times its cluster's mean gender and age probabilities."""
    heads = head_marginals(probabilities)
    gender, age = cluster_means(heads["gender"], clusters), cluster_means(heads["age"], clusters)
    joint = heads["mask"][:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]
    return joint.reshape(-1, NUM_CLASSES)


def vote_outputs(outputs: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The vote on a model's outputs (p0..p17 [, age estimate]): the probabilities as
    :func:`vote_in_people` votes them, and the age estimate, which learned borders cut into the
    age group, the mean of its cluster's estimates."""
    probabilities, ages = split_outputs(outputs)
    voted = vote_in_people(probabilities, clusters)
    return voted if ages is None else np.column_stack([voted, cluster_means(ages, clusters)])


def cluster_means(values: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean of its cluster's rows (float64)."""
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.zeros((index.max() + 1, *values.shape[1:]))
    np.add.at(sums, index, values)
    counts = np.bincount(index).reshape(-1, *[1] * (values.ndim - 1))
    return (sums / counts)[index]


def purity(clusters: np.ndarray, people: np.ndarray) -> float:
    """Share of photos whose cluster's most common true person is their own person."""
    matched = 0
    for cluster in np.unique(clusters):
        _, counts = np.unique(people[clusters == cluster], return_counts=True)
        matched += counts.max()
    return matched / len(people) if len(people) else 0.0


@dataclass
class GroupingCheck:
    """The grouping tried on held-out training people, whose persons and labels are known."""

    purity: float
    f1_per_photo: float
    f1_grouped: float
    photos: int
    people: int
    sure: float  # share of resamples of the held-out people in which the vote scores higher

    @property
    def helps(self) -> bool:
        """A gain that resampling the held-out people confirms (macro F1 over 18 classes with
        rare ones moves by a point or two between samples of a few hundred people)."""
        return self.sure >= SURE_ENOUGH


def check_on_held_out(
    layouts: np.ndarray,
    persons: np.ndarray,
    checked: np.ndarray,
    outputs: np.ndarray,
    targets: np.ndarray,
    calibration: Calibration | None = None,
    folds: np.ndarray | None = None,
) -> GroupingCheck:
    """The training photos' colour layouts and persons; ``checked`` the rows with out-of-fold
    ``outputs`` (p0..p17 [, age estimate]) and ``targets``. The checked persons are split into two
    halves; each half is grouped in the identity space of everybody else's photos, as the test
    photos are in that of all training photos, and voted with its own outputs. Both are decided as
    the prediction will be: with ``calibration`` applied after the vote, when there is one. Where
    it was learned on these outputs, ``folds`` (each checked row's fold) has each fold decided
    with what it learned on the other folds, as the test photos are decided with borders and
    biases that never saw them (borders fitted on a row's own photos flatter its per-photo F1,
    by 0.02 on a 600-person set, and not the vote's, which they were not fitted to)."""
    checked_persons = persons[checked]
    clusters = held_out_clusters(layouts, persons, checked)
    per_photo = held_out_classes(outputs, folds, calibration)
    grouped = held_out_classes(vote_outputs(outputs, clusters), folds, calibration)
    return GroupingCheck(
        purity=round(purity(clusters, checked_persons), 4),
        f1_per_photo=round(macro_f1(targets, per_photo), 4),
        f1_grouped=round(macro_f1(targets, grouped), 4),
        photos=len(checked),
        people=len(np.unique(checked_persons)),
        sure=share_of_resamples_better(targets, per_photo, grouped, checked_persons),
    )


def held_out_clusters(layouts: np.ndarray, persons: np.ndarray, checked: np.ndarray) -> np.ndarray:
    """Cluster ids of the ``checked`` rows: their persons split into two halves, each grouped in
    the identity space of everybody else's photos, as the test photos are in that of all training photos."""
    checked_persons = persons[checked]
    clusters = np.empty(len(checked), dtype=int)
    offset = 0
    for half in held_out_halves(checked_persons):
        outside = ~np.isin(persons, checked_persons[half])
        found = group_photos(layouts[outside], persons[outside], layouts[checked[half]])
        clusters[half] = found + offset
        offset += int(found.max()) + 1
    return clusters


def held_out_halves(persons: np.ndarray) -> list[np.ndarray]:
    """Two row masks splitting ``persons`` person-wise: every other person in sorted order."""
    distinct = np.unique(persons)
    first = np.isin(persons, distinct[::2])
    return [half for half in (first, ~first) if half.any()]


# --- what predict reads: the training photos, their persons and out-of-fold probabilities -------


@dataclass
class PersonGrouping:
    """The test photos' person clusters, the check on held-out people, and whether the vote is
    applied (only when the check says it helps)."""

    clusters: np.ndarray
    check: GroupingCheck
    whole_photos: Path | None = None  # where the whole photos of face crops were read, if they were

    @property
    def applied(self) -> bool:
        return self.check.helps


def group_test_photos(
    runs: list[Path],
    test_root: Path,
    test_paths: list[str],
    cache_dir,
    test_dataset: Dataset,
    calibration: Calibration | None = None,
) -> PersonGrouping:
    """Group the test photos with the identity space of the runs' training photos, and check the
    grouping on the runs' validation photos (their mean outputs where several runs held the same
    photo out), decided as the test photos will be (``calibration`` applied). ``test_dataset``:
    the test folder as read already, whose training photos serve when the runs were trained there."""
    train_root = Path(read_json(runs[0] / names.CONFIG)["data"]["root"])
    if not (train_root / "train").is_dir():
        raise UserError(f"--group-people: {train_root}, where {runs[0]} was trained, has no train/ folder")
    same = train_root.resolve() == Path(test_root).resolve()
    training = test_dataset.train if same else read_dataset(train_root, require_train=True).train
    train_paths = list(training["path"])
    train_whole, test_whole = whole_photos(train_root, train_paths), whole_photos(Path(test_root), test_paths)
    if train_whole is None or test_whole is None:  # the same signal on both sides, or the crops alone
        train_whole = test_whole = None
    layouts = identity_layouts(train_root, train_paths, cache_dir, train_whole)
    persons = training["profile"].to_numpy()
    validated = validation_table(runs)
    rows = pd.Series(np.arange(len(training)), index=training["path"])
    validated = validated[validated["path"].isin(rows.index)]
    outputs = validated.drop(columns=["path", "target", "fold"]).to_numpy()
    folds = validated["fold"].to_numpy() if fitted_on_runs(calibration, runs) else None
    checked = rows[validated["path"]].to_numpy()
    check = check_on_held_out(layouts, persons, checked, outputs, validated["target"].to_numpy(), calibration, folds)
    test_layouts = identity_layouts(Path(test_root), test_paths, cache_dir, test_whole)
    return PersonGrouping(group_photos(layouts, persons, test_layouts), check, test_whole)


def validation_table(runs: list[Path]) -> pd.DataFrame:
    """path, target, fold (the position of the first run that validated on it, as a cv group's
    out-of-fold table numbers its folds) and mean outputs (p0..p17, and the age estimate when
    every run gives one) of every photo some run validated on."""
    missing = [run / names.VALID_PROBABILITIES for run in runs if not (run / names.VALID_PROBABILITIES).exists()]
    if missing:
        raise UserError(f"--group-people: {missing[0]} not found (the check needs every run's validation photos)")
    tables = [pd.read_csv(run / names.VALID_PROBABILITIES) for run in runs]
    estimated = all(AGE_ESTIMATE_COLUMN in table for table in tables)
    columns = PROBABILITY_COLUMNS + [AGE_ESTIMATE_COLUMN] * estimated
    joined = pd.concat([table[["path", "target", *columns]].assign(fold=fold) for fold, table in enumerate(tables)])
    aggregation = {"target": "first", "fold": "first", **dict.fromkeys(columns, "mean")}
    return joined.groupby("path", sort=False, as_index=False).agg(aggregation)
