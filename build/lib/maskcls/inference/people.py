"""Person-consistent prediction: the test set holds 7 photos of each person under hashed names.

Photos are grouped into people by their embeddings from the trained backbone(s), then gender
and age, which do not change inside a person, are voted over the group while each photo keeps
its own mask prediction. Opt-in (``predict --group-people``): it helps when every person really
has several photos in the set (as in the competition), and can hurt when they do not.

The mask state changes the embedding of a face a lot, which would pull photos together by mask
rather than by person; so each embedding is first centred on the mean embedding of the photos
with the same predicted mask state.

Whether it helps is checked where the answer is known: each fold's validation photos are grouped
the same way (:func:`check_on_validation`), giving the clustering purity against the real
persons and the validation macro F1 with and without the vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskcls.data.cache import cached_images
from maskcls.labels import NUM_CLASSES, PROBABILITY_COLUMNS, head_marginals
from maskcls.metrics import macro_f1
from maskcls.rundir import names
from maskcls.training.engine import finish, prepare

PHOTOS_PER_PERSON = 7


@torch.no_grad()
def backbone_embeddings(loaded, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Per image, the run's backbone features of every stage, average-pooled, each stage
    L2-normalised, side by side: early stages keep colour and texture (who), the last one
    the attributes. Backbones without ``forward_intermediates`` give their pooled output."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size]))
        tensor = finish(prepare(batch, loaded.settings), loaded.settings)
        with loaded.settings.autocast():
            out.append(stage_features(loaded.model.backbone, tensor))
    return normalise(np.concatenate(out)) if out else np.empty((0, 1), np.float32)


def stage_features(backbone: torch.nn.Module, tensor: torch.Tensor) -> np.ndarray:
    if not hasattr(backbone, "forward_intermediates"):
        return normalise(backbone(tensor).float().cpu().numpy())
    maps = backbone.forward_intermediates(tensor, intermediates_only=True)
    return np.concatenate([normalise(part.float().mean(dim=(2, 3)).cpu().numpy()) for part in maps], axis=1)


def normalise(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def centre_by_mask(embeddings: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Subtract from each embedding the mean of the photos with its predicted mask state."""
    mask = head_marginals(probabilities)["mask"].argmax(axis=1)
    centred = embeddings.copy()
    for state in np.unique(mask):
        centred[mask == state] -= embeddings[mask == state].mean(axis=0)
    return normalise(centred)


def group_photos(embeddings: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Cluster ids of photos: embeddings centred per predicted mask state, then clustered."""
    return cluster_people(centre_by_mask(embeddings, probabilities))


def cluster_people(embeddings: np.ndarray, per_person: int = PHOTOS_PER_PERSON) -> np.ndarray:
    """Cluster ids: agglomerative clustering (Ward) of the normalised embeddings into
    ``len / per_person`` groups."""
    from sklearn.cluster import AgglomerativeClustering

    count = len(embeddings)
    groups = max(1, round(count / per_person))
    if groups >= count:
        return np.arange(count)
    return AgglomerativeClustering(n_clusters=groups, linkage="ward").fit_predict(embeddings)


def vote_in_people(probabilities: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each photo's own mask probabilities times its cluster's mean gender and age probabilities."""
    heads = head_marginals(probabilities)
    mask, gender, age = heads["mask"], heads["gender"], heads["age"]
    voted_gender, voted_age = np.empty_like(gender), np.empty_like(age)
    for cluster in np.unique(clusters):
        members = clusters == cluster
        voted_gender[members] = gender[members].mean(axis=0)
        voted_age[members] = age[members].mean(axis=0)
    joint = mask[:, :, None, None] * voted_gender[:, None, :, None] * voted_age[:, None, None, :]
    return joint.reshape(-1, NUM_CLASSES)


def purity(clusters: np.ndarray, people: np.ndarray) -> float:
    """Share of photos whose cluster's most common true person is their own person."""
    matched = 0
    for cluster in np.unique(clusters):
        _, counts = np.unique(people[clusters == cluster], return_counts=True)
        matched += counts.max()
    return matched / len(people) if len(people) else 0.0


@dataclass
class GroupingCheck:
    """The same grouping tried on the validation photos, whose persons are known."""

    purity: float
    f1_per_photo: float
    f1_grouped: float
    photos: int

    @property
    def helps(self) -> bool:
        return self.f1_grouped > self.f1_per_photo


def check_on_validation(loaded_runs: list, cache_dir) -> GroupingCheck | None:
    """Cluster each run's validation photos (its own model), vote, and compare with the known
    persons and labels; pooled over the runs. None when a run's data or predictions are missing."""
    clusters, people, plain, grouped, targets, offset = [], [], [], [], [], 0
    for loaded in loaded_runs:
        table_path = loaded.run / names.VALID_PROBABILITIES
        if not table_path.exists():
            return None
        table = pd.read_csv(table_path)
        root = Path(loaded.config.data.root)
        if not root.is_dir():
            return None
        images = cached_images(root, list(table["path"]), loaded.image_size, cache_dir)
        probabilities = table[PROBABILITY_COLUMNS].to_numpy()
        found = group_photos(backbone_embeddings(loaded, images), probabilities)
        clusters.append(found + offset)
        offset += int(found.max()) + 1
        people.append(table["profile"].to_numpy())
        plain.append(probabilities.argmax(axis=1))
        grouped.append(vote_in_people(probabilities, found).argmax(axis=1))
        targets.append(table["target"].to_numpy())
    target = np.concatenate(targets)
    return GroupingCheck(
        purity=round(purity(np.concatenate(clusters), np.concatenate(people)), 4),
        f1_per_photo=round(macro_f1(target, np.concatenate(plain)), 4),
        f1_grouped=round(macro_f1(target, np.concatenate(grouped)), 4),
        photos=len(target),
    )
