"""A contact sheet: the 7 images of some people side by side, labelled, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskcls.data.layout import Dataset
from maskcls.files import atomic_path
from maskcls.labels import MASK_STEMS, Gender


def contact_sheet(
    dataset: Dataset, out: str | Path, people: int = 6, seed: int = 0, thumb: tuple[int, int] = (120, 160)
) -> Path:
    """Save a sheet of ``people`` random profiles (one row each, 7 images) to ``out`` (PNG)."""
    profiles = dataset.people
    rng = np.random.default_rng(seed)
    chosen = profiles.iloc[sorted(rng.choice(len(profiles), size=min(people, len(profiles)), replace=False))]
    label_h = 16
    width, height = thumb[0] * len(MASK_STEMS), (thumb[1] + label_h) * len(chosen)
    sheet = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(sheet)
    for row, person in enumerate(chosen.itertuples()):
        top = row * (thumb[1] + label_h)
        images = dataset.train[dataset.train["profile"] == person.profile].set_index("stem")
        gender = Gender(person.gender).name.lower()
        canvas.text((4, top + 2), f"{person.profile}  ({gender}, {person.age})", fill="black")
        for column, stem in enumerate(MASK_STEMS):
            if stem not in images.index:
                continue
            with Image.open(dataset.absolute(images.loc[stem, "path"])) as image:
                tile = image.convert("RGB").resize(thumb, Image.BILINEAR)
            sheet.paste(tile, (column * thumb[0], top + label_h))
    with atomic_path(out) as temporary:
        sheet.save(temporary, format="PNG")
    return Path(out)
