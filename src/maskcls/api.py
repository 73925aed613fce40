"""The library in one place, for notebooks and scripts: plain arguments in, small results out.

    import maskcls
    config = maskcls.load_config("cpu-pretrained", data="data-faces", **{"train.epochs": 2})
    group = maskcls.cross_validate(config)              # CvResult: folder, oof_f1, fold_f1, ...
    table = maskcls.predict(group.folder, data="data-faces")        # one row per test photo
    photos = maskcls.Predictor(group.folder).predict_paths("my-photos/")  # any photos
    maskcls.score(group.folder / "submission.csv", truth="data")    # public / private F1

Every call is the one the ``maskcls`` command runs; errors are :class:`maskcls.UserError` with
a message naming the argument, file or line at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from maskcls.callbacks import Progress
from maskcls.config import Config
from maskcls.config import load_config as load_recipe
from maskcls.results import CvResult, FitResult, StudyResult

SHORTCUTS = {"data": "data.root", "cache_dir": "train.cache_dir", "fold": "train.fold", "folds": "train.folds"}


def synth(folder: str | Path, *, people: int = 300, eval_people: int | None = None, seed: int = 0, **options):
    """A synthetic dataset in the competition layout (its answers in ``folder/truth/``), for trying
    things without the real photos; ``options``: difficulty, quirks (see ``maskcls synth --help``)."""
    from maskcls.synth.generate import SynthSpec, generate_dataset

    workers = options.pop("workers", None)
    spec = SynthSpec(people=people, eval_people=eval_people, seed=seed, **options)
    return generate_dataset(folder, spec, workers=workers, overwrite=True)


def crop(data: str | Path, out: str | Path, *, size: tuple[int, int] | None = (192, 256), detector: str = "mtcnn"):
    """Every photo of ``data`` cut to its face (MTCNN; a fixed box where it finds none), written to
    ``out`` in the same layout with ``boxes.csv``; resumes a half-made ``out``."""
    from maskcls.faces.crop import CropOptions, crop_dataset

    return crop_dataset(data, out, CropOptions(detector=detector, size=size))


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None, **settings: Any) -> Config:
    """A validated recipe: a YAML file or a shipped recipe's name (``"cpu-pretrained"``; see
    :func:`maskcls.recipebook.recipe_names`), then ``overrides`` (``"optim.lr=3e-4"``), then
    ``settings``: dotted keys as keyword arguments (``**{"train.epochs": 2}``) or the shortcuts
    ``data``, ``cache_dir``, ``fold``, ``folds``, ``seed``, ``name``."""
    given = list(overrides or [])
    for key, value in settings.items():
        given.append(f"{SHORTCUTS.get(key, key)}={value}")
    return load_recipe(recipe, given)


def fit(config: Config, *, runs_dir: str | Path = "runs", progress: Progress | None = None, **options) -> FitResult:
    """Train one model on one split (``config.train.fold``); see :func:`maskcls.training.train.fit`."""
    from maskcls.training.train import fit as fit_run

    return fit_run(config, runs_dir=runs_dir, progress=progress, **options)


def cross_validate(
    config: Config, *, runs_dir: str | Path = "runs", progress: Progress | None = None, **options
) -> CvResult:
    """Train every fold still missing and score the out-of-fold predictions; see
    :func:`maskcls.experiments.cv.cross_validate`."""
    from maskcls.experiments.cv import cross_validate as run_folds

    return run_folds(config, runs_dir=runs_dir, progress=progress, **options)


def tune(
    config: Config,
    space: str | Path,
    trials: int,
    *,
    runs_dir: str | Path = "runs",
    folds: int | None = None,
    pruner: str = "median",
    study: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
) -> StudyResult:
    """Search the ``space`` file (or a shipped space's name) with Optuna until the study has
    ``trials`` finished trials; see :mod:`maskcls.experiments.tune`."""
    from maskcls.experiments.space import read_space
    from maskcls.experiments.tune import TunePlan
    from maskcls.experiments.tune import tune as run_study

    plan = TunePlan(
        base=config, space=read_space(space, config), trials=trials, folds=folds, pruner=pruner, study=study,
        storage=storage, timeout=timeout,
    )  # fmt: skip
    return run_study(plan, runs_dir)


def predict(
    sources: str | Path | list[str | Path],
    *,
    data: str | Path | None = None,
    images: str | Path | list[str | Path] | None = None,
    tta: str = "none",
    backend: str = "torch",
    calibration: str | Path | None = "auto",
    batch_size: int = 128,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Predictions as a table: of a competition folder's test photos (``data``: ImageID, class, mask /
    gender / age names, p0..p17, age estimate) or of any photos (``images``: files or folders; one
    source; the crop its training data had is applied). ``calibration``: ``"auto"`` applies a
    group's own calibration.json, None the raw model, or a file."""
    from maskcls.errors import UserError

    sources = [sources] if isinstance(sources, str | Path) else list(sources)
    if (data is None) == (images is None):
        raise UserError("predict: give data (a competition folder) or images (photos or folders), not both")
    if images is not None:
        from maskcls.inference.inference import Predictor

        if len(sources) != 1:
            raise UserError(f"predict: images are predicted with one run or cv group, got {len(sources)} sources")
        return Predictor(sources[0], backend=backend, tta=tta, calibration=calibration).predict_paths(images)
    from maskcls.inference.inference import named_table
    from maskcls.inference.predict import predict_dataset

    prediction = predict_dataset(
        sources, data, tta=tta, backend=backend, batch_size=batch_size, cache_dir=cache_dir, calibration=calibration
    )
    return named_table(prediction.table)


def calibrate(source: str | Path, out: str | Path | None = None):
    """Learn age borders and class biases on a cv group's out-of-fold probabilities (each kept only
    when held-out folds confirm it) and write ``calibration.json``; returns the calibration."""
    from maskcls.evaluation.calibrate import calibrate as fit_calibration
    from maskcls.evaluation.calibrate import default_path

    result = fit_calibration(source)
    result.write(out or default_path(source))
    return result


def ensemble(sources: list[str | Path], *, method: str = "soft", weights: list[float] | None = None, oof=False):
    """Soft or hard vote of probability files, runs or cv groups; see :mod:`maskcls.evaluation.ensemble`."""
    from maskcls.evaluation.ensemble import ensemble as combine

    return combine(sources, method=method, weights=weights, oof=oof)


def score(submission: str | Path, truth: str | Path) -> dict:
    """Macro F1 and accuracy of a submission on the public, private and all rows, per attribute."""
    from maskcls.evaluation.score import score_submission

    return score_submission(submission, truth)


def compare(sources: list[str | Path]) -> list:
    """Out-of-fold macro F1 of cv groups of one training set, each with its 90% interval over the
    training people and its share of resamples beating the first; see :mod:`maskcls.evaluation.compare`."""
    from maskcls.evaluation.compare import compare_out_of_fold

    return compare_out_of_fold(sources)


def runs(runs_dir: str | Path = "runs", sort: str = "date", where: list[str] | None = None) -> pd.DataFrame:
    """The runs table (``maskcls runs``): one row per run or cv group, the config keys that differ
    between them, and their scores; ``where``: ``KEY=VALUE`` filters (``*`` globs)."""
    from maskcls.experiments.catalog import find_entries, tabulate

    _, columns, rows = tabulate(find_entries(runs_dir), sort, where)
    return pd.DataFrame(rows, columns=columns)


def explain(source: str | Path, data: str | Path | None = None, **options):
    """Class activation maps of a run or cv group (``maskcls explain``): contact sheets per head,
    explain.csv and, on a synthetic set, the share of the maps on the face; returns what it wrote
    (``options``: images, out, layer, split, measure, device)."""
    from maskcls.experiments.explain import explain as draw_maps

    return draw_maps(source, data, **options)


def pseudo(
    group: str | Path,
    *,
    threshold: float = 0.9,
    soft: float | None = None,
    data: str | Path | None = None,
    runs_dir=None,
) -> CvResult:
    """``maskcls pseudo``: the group's confident test predictions as pseudo-labels in every fold's
    training photos, cross-validated again as ``NAME-pseudo`` (beside the group unless told);
    ``soft``: each fold model's probabilities learnt with that share of the loss, as
    ``NAME-pseudo-soft``."""
    from maskcls.experiments.pseudo import second_round

    group = Path(group)
    return second_round(group, threshold=threshold, soft=soft, data=data, runs_dir=runs_dir or group.parent)[2]


def distill(
    group: str | Path, *, weight: float = 0.5, data: str | Path | None = None, overrides=(), runs_dir=None
) -> FitResult:
    """``maskcls distill``: the group's ensemble taught into one model, ``NAME-student`` (beside the
    group unless told); ``overrides`` change the student's recipe (``["model.name=resnet10t"]``)."""
    from maskcls.experiments.distill import distill as teach

    group = Path(group)
    return teach(group, weight=weight, data=data, overrides=list(overrides), runs_dir=runs_dir or group.parent)[2]


def track(folder: str | Path, uri: str, *, experiment: str = "maskcls") -> bool:
    """Send a run, cv group, sweep or study folder (or a folder of them) to an MLflow tracking
    server: what it has not had yet; True when all of it got through."""
    from maskcls.tracking.tracker import Tracker

    return Tracker(uri, experiment=experiment).start().finish(Path(folder))


def load_run(run: str | Path, device: str = "auto"):
    """A trained run's model (best epoch), config and input normalisation, ready to predict."""
    from maskcls.inference.loading import load_run as load

    return load(Path(run), device)
