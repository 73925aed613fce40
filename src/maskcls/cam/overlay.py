"""Pictures of maps: a map drawn over its photo (a colour scale, half transparent), and contact
sheets of such overlays in captioned rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MAP_OPACITY = 0.5
TILE_HEIGHT = 192
"""Sheets show each photo at least this tall (small training sizes are scaled up, nearest)."""


def heat_colours(maps: np.ndarray) -> np.ndarray:
    """(…, H, W) in [0, 1] -> (…, H, W, 3) uint8 in matplotlib's ``jet`` (blue: none, red: most)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(maps, 0, 1))[..., :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray, heat_map: np.ndarray, opacity: float = MAP_OPACITY) -> np.ndarray:
    """A photo (H, W, 3 uint8) with its map (H, W) over it; the map is resized to the photo first."""
    height, width = image.shape[:2]
    if heat_map.shape != (height, width):
        resized = Image.fromarray((np.clip(heat_map, 0, 1) * 255).astype(np.uint8)).resize(
            (width, height), Image.BILINEAR
        )
        heat_map = np.asarray(resized, dtype=np.float32) / 255
    blended = (1 - opacity) * image.astype(np.float32) + opacity * heat_colours(heat_map).astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def heat_png(heat_map: np.ndarray, opacity: float = MAP_OPACITY) -> bytes:
    """A map as a small RGBA PNG (its own size): the colour scale, opaque where the map is high and
    clear where it is zero, to lay over a photo in a browser."""
    import io

    rgba = np.dstack([heat_colours(heat_map), (np.clip(heat_map, 0, 1) * opacity * 255).astype(np.uint8)])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@dataclass
class Tile:
    image: np.ndarray  # an overlay, H x W x 3
    caption: str


def contact_sheet(rows: dict[str, list[Tile]], title: str, columns: int) -> Image.Image:
    """One row of tiles per entry (its key as the row's label), ``columns`` tiles wide."""
    tiles = [tile for row in rows.values() for tile in row]
    height = max([tile.image.shape[0] for tile in tiles] or [TILE_HEIGHT])
    scale = max(1, -(-TILE_HEIGHT // height))
    tile_w = max([tile.image.shape[1] for tile in tiles] or [TILE_HEIGHT * 3 // 4]) * scale
    tile_h = height * scale
    caption_h, label_h, title_h, gap = 16, 20, 26, 6
    row_h = label_h + tile_h + caption_h + gap
    sheet = Image.new("RGB", (gap + columns * (tile_w + gap), title_h + len(rows) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((gap, 6), title, fill="black")
    for index, (label, row) in enumerate(rows.items()):
        top = title_h + index * row_h
        draw.text((gap, top + 3), label if row else f"{label}: none", fill="black")
        for column, tile in enumerate(row[:columns]):
            left = gap + column * (tile_w + gap)
            picture = Image.fromarray(tile.image).resize((tile.image.shape[1] * scale, tile_h), Image.NEAREST)
            sheet.paste(picture, (left, top + label_h))
            draw.text((left, top + label_h + tile_h + 2), tile.caption, fill="black")
    return sheet
