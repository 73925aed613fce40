"""``audit(group)``: training labels that are probably wrong, found from out-of-fold probabilities.

Confident learning, per attribute: the threshold of a value (say ``female``) is the mean
probability the models give it on images labelled with it. An image "confidently says" the
values whose probability reaches their threshold (the most probable of them). A label is
suspect when most of the person's images predict another value, at least one confidently:

- gender and age belong to the person: "this person's gender is male in 7 of 7 images";
- mask belongs to the image, and the known mistake is a swapped pair: the ``incorrect_mask``
  photo says ``not wear`` while the ``normal`` photo says ``incorrect``.

Suggestions are ranked by how much more probable the suggested value is than the given one,
and written as a corrections YAML for ``data.corrections`` (nothing is edited in place).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from maskcls.files import write_text_atomic
from maskcls.labels import AGE_BORDERS, HEAD_VALUE_NAMES, PROBABILITY_COLUMNS, Mask, decode_classes, head_marginals
from maskcls.metrics import summary
from maskcls.rundir.tables import read_out_of_fold

log = logging.getLogger("maskcls")
TRUSTED_F1 = {"mask": 0.9, "gender": 0.9, "age": 0.8}  # below this out-of-fold F1, suggestions are noise

AUDIT_COLUMNS = ["profile", "attribute", "given", "suggested", "evidence", "score", "agreeing", "images"]


@dataclass
class Attribute:
    name: str
    given: np.ndarray  # (N,) given value index
    probabilities: np.ndarray  # (N, values)

    def thresholds(self) -> np.ndarray:
        """Per value: the mean probability of that value on images labelled with it."""
        values = self.probabilities.shape[1]
        return np.array(
            [self.probabilities[self.given == v, v].mean() if (self.given == v).any() else 1.0 for v in range(values)]
        )

    def confident_values(self) -> np.ndarray:
        """Per image: the most probable value at or above its threshold, or -1 when none is."""
        above = self.probabilities >= self.thresholds()[None, :]
        masked = np.where(above, self.probabilities, -1.0)
        return np.where(above.any(axis=1), masked.argmax(axis=1), -1)


def weak_model_warnings(table: pd.DataFrame) -> list[str]:
    """An attribute the model gets wrong often gives suggestions that are mostly its own mistakes."""
    scores = summary(table["target"].to_numpy(), table[PROBABILITY_COLUMNS].to_numpy().argmax(axis=1))
    return [
        f"the model is too weak to audit {name} (out-of-fold {name} F1 {scores[f'f1_{name}']:.3f} < {least}): "
        f"its {name} suggestions are mostly its own mistakes; audit with a stronger model"
        for name, least in TRUSTED_F1.items()
        if scores[f"f1_{name}"] < least
    ]


def attributes(table: pd.DataFrame) -> dict[str, Attribute]:
    """Given values and per-attribute probabilities (the 18 classes summed per head)."""
    given = dict(zip(("mask", "gender", "age"), decode_classes(table["target"].to_numpy()), strict=True))
    marginals = head_marginals(table[PROBABILITY_COLUMNS].to_numpy())
    return {name: Attribute(name, given[name], marginals[name]) for name in marginals}


def audit(group: str | Path, min_share: float = 0.5) -> pd.DataFrame:
    """Ranked suggestions (``AUDIT_COLUMNS``): person-level gender and age, swapped mask pairs.
    ``min_share``: the fraction of a person's images that must confidently say the other value."""
    table, _ = read_out_of_fold(group, {"path", "profile", "target"}, "audit")
    for warning in weak_model_warnings(table):
        log.warning(warning)
    found = attributes(table)
    rows = [
        *person_suggestions(table, found["gender"], min_share),
        *person_suggestions(table, found["age"], min_share),
        *swap_suggestions(table, found["mask"]),
    ]
    frame = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def person_suggestions(table: pd.DataFrame, attribute: Attribute, min_share: float) -> list[dict]:
    """A person whose photos mostly predict another value, at least one of them confidently."""
    confident = attribute.confident_values()
    predicted = attribute.probabilities.argmax(axis=1)
    names = HEAD_VALUE_NAMES[attribute.name]
    rows = []
    for profile, index in table.groupby("profile", sort=True).indices.items():
        given = int(np.bincount(attribute.given[index]).argmax())
        others = predicted[index][predicted[index] != given]
        if len(others) == 0:
            continue
        suggested = int(np.bincount(others).argmax())
        agreeing = int((predicted[index] == suggested).sum())
        sure = int((confident[index] == suggested).sum())
        if agreeing < min_share * len(index) or sure == 0:
            continue
        mean_suggested = attribute.probabilities[index, suggested].mean()
        mean_given = attribute.probabilities[index, given].mean()
        rows.append(
            {
                "profile": profile,
                "attribute": attribute.name,
                "given": names[given],
                "suggested": names[suggested],
                "evidence": f"{agreeing} of {len(index)} images say {names[suggested]} ({sure} confidently; "
                f"mean p {mean_suggested:.2f} vs {mean_given:.2f} for {names[given]})",
                "score": round(float(mean_suggested - mean_given), 4),
                "agreeing": agreeing,
                "images": len(index),
            }
        )
    return rows


def swap_suggestions(table: pd.DataFrame, mask: Attribute) -> list[dict]:
    """A person whose incorrect_mask photo says not-wear and whose normal photo says incorrect."""
    confident = mask.confident_values()
    stems = table["path"].map(lambda path: Path(path).stem)
    rows = []
    for profile, index in table.groupby("profile", sort=True).indices.items():
        by_stem = {stems.iloc[k]: k for k in index}
        incorrect, normal = by_stem.get("incorrect_mask"), by_stem.get("normal")
        if incorrect is None or normal is None:
            continue
        if confident[incorrect] != Mask.NOT_WEAR or confident[normal] != Mask.INCORRECT:
            continue
        swapped = (mask.probabilities[incorrect, Mask.NOT_WEAR] + mask.probabilities[normal, Mask.INCORRECT]) / 2
        as_given = (mask.probabilities[incorrect, Mask.INCORRECT] + mask.probabilities[normal, Mask.NOT_WEAR]) / 2
        rows.append(
            {
                "profile": profile,
                "attribute": "mask",
                "given": "incorrect_mask / normal",
                "suggested": "swapped",
                "evidence": f"incorrect_mask says not wear (p {mask.probabilities[incorrect, Mask.NOT_WEAR]:.2f}), "
                f"normal says incorrect (p {mask.probabilities[normal, Mask.INCORRECT]:.2f})",
                "score": round(float(swapped - as_given), 4),
                "agreeing": 2,
                "images": 2,
            }
        )
    return rows


def age_inside(group: int, given_age: int, borders: tuple[int, int] = AGE_BORDERS) -> int:
    """The age nearest to ``given_age`` that falls in ``group`` (an audit knows groups, not years)."""
    low = (0, *borders)[group]
    high = (*borders, 200)[group] - 1
    return int(min(max(given_age, low), high))


def corrections_yaml(suggestions: pd.DataFrame, source: str) -> str:
    """The suggestions as a corrections file in the format ``data.corrections`` reads."""
    fixes = []
    for row in suggestions.itertuples():
        fix: dict = {"profile": row.profile}
        if row.attribute == "gender":
            fix["gender"] = row.suggested
        elif row.attribute == "age":
            given_age = int(str(row.profile).rsplit("_", 1)[-1])
            fix["age"] = age_inside(HEAD_VALUE_NAMES["age"].index(row.suggested), given_age)
        else:
            fix["swap_incorrect_normal"] = True
        fix["note"] = f"audit score {row.score:.2f}: {row.evidence}"
        fixes.append(fix)
    document = {
        "description": f"suggested by maskcls audit of {source}; check the photos before trusting them",
        "verified": False,
        "fixes": fixes,
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


def write_corrections(suggestions: pd.DataFrame, path: str | Path, source: str) -> Path:
    write_text_atomic(path, corrections_yaml(suggestions, source))
    return Path(path)
