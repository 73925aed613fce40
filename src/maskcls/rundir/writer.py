"""Everything a training run writes into its folder, in one place: the per-epoch summary and
TensorBoard scalars, the checkpoints, the best epoch's validation probabilities and figures,
and ``result.json`` last. Rank 0 writes; every other rank gets the :class:`NullWriter`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.figures import confusion_figure, pyplot
from maskcls.files import write_json_atomic
from maskcls.labels import NUM_CLASSES
from maskcls.results import FitResult
from maskcls.rundir import names
from maskcls.rundir.checkpoint import copy_checkpoint, save_checkpoint
from maskcls.rundir.folders import write_rows


class RunWriter:
    """Writes one run's folder as its epochs end. ``first_epoch``: epochs already in the folder
    (a resumed run), whose TensorBoard steps past it are purged."""

    def __init__(self, folder: Path, first_epoch: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.events = SummaryWriter(str(self.folder), purge_step=first_epoch + 1)  # steps are epochs from 1

    def epoch_done(self, rows: list[dict], state: dict, best_probabilities: pd.DataFrame | None) -> None:
        """After an epoch: its row (``rows[-1]``) in summary.csv and TensorBoard, ``state`` as
        last.pt, and, when it is the best so far (``best_probabilities`` given), best.pt and the
        validation probabilities."""
        write_rows(self.folder / names.SUMMARY, rows)
        log_scalars(self.events, rows[-1], rows[-1]["epoch"])
        save_checkpoint(self.folder / names.LAST_CHECKPOINT, state)
        if best_probabilities is not None:
            copy_checkpoint(self.folder / names.LAST_CHECKPOINT, self.folder / names.BEST_CHECKPOINT)
            write_rows(self.folder / names.VALID_PROBABILITIES, best_probabilities.to_dict("records"))

    def finish(self, rows: list[dict], best_epoch: int, images, valid_rows: np.ndarray) -> None:
        """The run ended (all epochs or early stop): the best epoch's figures, then ``result.json``."""
        best = next((row for row in rows if row["epoch"] == best_epoch), None)
        if best is not None:
            probabilities = pd.read_csv(self.folder / names.VALID_PROBABILITIES)
            for name, figure in validation_figures(images, valid_rows, probabilities, self.folder).items():
                self.events.add_figure(f"valid/{name}", figure, best_epoch)
        write_json_atomic(self.folder / names.RESULT, run_result(rows, best_epoch))

    def close(self) -> None:
        self.events.close()


class NullWriter:
    """What ranks other than 0 write: nothing."""

    def epoch_done(self, rows: list[dict], state: dict, best_probabilities: pd.DataFrame | None) -> None:
        pass

    def finish(self, rows: list[dict], best_epoch: int, images, valid_rows: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


def run_result(rows: list[dict], best_epoch: int) -> dict:
    """``result.json``: the run finished (all epochs or early stop) and its best epoch; the same
    figures :func:`maskcls.training.train.fit` returns."""
    found = FitResult.from_rows(Path(), rows, best_epoch)
    keys = ("epochs_run", "best_epoch", "valid_f1", "valid_accuracy", "seconds")
    borders = {} if found.valid_f1_borders is None else {"valid_f1_borders": found.valid_f1_borders}
    return {"finished": True, **{key: getattr(found, key) for key in keys}, **borders}


def log_scalars(events, row: dict, epoch: int) -> None:
    for key, value in row.items():
        if key in ("epoch", "seconds"):
            continue
        split, _, metric = key.partition("_")
        events.add_scalar(f"{split}/{metric}" if split in ("train", "valid") else key, value, epoch)


def validation_figures(images, valid_rows: np.ndarray, probabilities: pd.DataFrame, run: Path) -> dict:
    """A confusion-matrix heat map and a grid of validation images titled truth / prediction."""
    plt = pyplot()
    predicted = probabilities[[f"p{k}" for k in range(NUM_CLASSES)]].to_numpy().argmax(1)
    truth = probabilities["target"].to_numpy()
    matrix_figure = confusion_figure(truth, predicted, "validation confusion matrix (best epoch)")
    matrix_figure.savefig(run / names.CONFUSION_FIGURE, dpi=90)
    grid_figure, axes = plt.subplots(3, 6, figsize=(10, 6))
    rows = valid_rows[: axes.size]
    for axis, row, true, guess in zip(axes.flat, rows, truth, predicted, strict=False):
        axis.imshow(np.asarray(images[row]))
        axis.set_title(f"true {true} / pred {guess}", fontsize=8, color="green" if true == guess else "red")
        axis.axis("off")
    grid_figure.tight_layout()
    grid_figure.savefig(run / names.VALID_GRID_FIGURE, dpi=80)
    return {"confusion": matrix_figure, "grid": grid_figure}
