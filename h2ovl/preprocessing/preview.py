"""Seeing what a preprocessor does: the grid(s) drawn over the image and the tiles in model order.

Used by `h2ovl preview` and the demo. Drawing only; every decision comes from the preprocessor.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from h2ovl.preprocessing.base import ImagePreprocessor, TiledImage
from h2ovl.preprocessing.grids import SINGLE, Grid
from h2ovl.preprocessing.image_io import ImageSource, load_image

_GRID_COLOURS = {"grid": (220, 30, 30), "coarse": (220, 30, 30), "fine": (30, 90, 230)}
_PANEL_HEIGHT = 512
_THUMB_SIDE = 128
_MOSAIC_COLS = 7
_PAD = 8


def preview_summary(preprocessor: ImagePreprocessor, tiled: TiledImage, tokens_per_tile: int) -> dict[str, Any]:
    """The JSON-able facts of one preprocessed image."""
    summary: dict[str, Any] = {
        "preprocessor": type(preprocessor).__name__,
        "image_size": list(tiled.plan.image_size),
        "tile_size": preprocessor.tile_size,
        "grid": list(tiled.plan.grids["grid"]),
        "n_tiles": tiled.n_tiles,
        "tokens_per_tile": tokens_per_tile,
        "n_tokens": tiled.n_tokens(tokens_per_tile),
        "thumbnail": tiled.plan.has_thumbnail,
        "views": [list(v) for v in tiled.plan.views],
    }
    for name in ("coarse", "fine"):
        if name in tiled.plan.grids:
            summary[f"{name}_grid"] = list(tiled.plan.grids[name])
    return summary


def render_preview(source: ImageSource, preprocessor: ImagePreprocessor) -> tuple[Image.Image, TiledImage]:
    """A PNG-ready picture: left, the image with its grid lines; right, the tiles in model order."""
    image = load_image(source, preprocessor.max_pixels)
    tiled = preprocessor(image)
    left = draw_grids(image, tiled.plan.grids)
    right = _mosaic(tiled)
    canvas = Image.new("RGB", (left.width + right.width + 3 * _PAD, max(left.height, right.height) + 2 * _PAD), "white")
    canvas.paste(left, (_PAD, _PAD))
    canvas.paste(right, (left.width + 2 * _PAD, _PAD))
    return canvas, tiled


def draw_grids(
    image: Image.Image, grids: dict[str, Grid], height: int = _PANEL_HEIGHT, legend: bool = True
) -> Image.Image:
    """The image scaled to `height` px (at most 3 times as wide) with each grid's lines and, unless
    `legend` is False, their names in its corner."""
    scale = height / image.height
    if image.width * scale > 3 * height:  # keep very wide images readable
        scale = 3 * height / image.width
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    panel = image.resize((width, height), Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    legend_y = 2
    for name, grid in grids.items():
        if name == "grid" and len(grids) > 1:
            continue  # MSAC: "grid" is the coarse grid, drawn once under its own name
        colour = _GRID_COLOURS[name]
        line_width = 3 if name != "fine" else 2
        for c in range(1, grid.cols):
            x = round(c * width / grid.cols)
            draw.line([(x, 0), (x, height)], fill=colour, width=line_width)
        for r in range(1, grid.rows):
            y = round(r * height / grid.rows)
            draw.line([(0, y), (width, y)], fill=colour, width=line_width)
        draw.rectangle([0, 0, width - 1, height - 1], outline=colour, width=1)
        if not legend:
            continue
        label = f"{name} {grid.cols}x{grid.rows}"
        draw.rectangle(draw.textbbox((4, legend_y), label, font=font), fill="white")
        draw.text((4, legend_y), label, fill=colour, font=font)
        legend_y += 12
    return panel


def _mosaic(tiled: TiledImage) -> Image.Image:
    n = tiled.n_tiles
    cols = min(n, _MOSAIC_COLS)
    rows = math.ceil(n / cols)
    cell = _THUMB_SIDE + _PAD
    mosaic = Image.new("RGB", (cols * cell, rows * cell + 14), (245, 245, 245))
    draw = ImageDraw.Draw(mosaic)
    font = ImageFont.load_default()
    labels = _tile_labels(tiled)
    for i, tile in enumerate(tiled.tiles):
        picture = Image.fromarray(tile.permute(1, 2, 0).numpy()).resize((_THUMB_SIDE, _THUMB_SIDE))
        x, y = (i % cols) * cell, (i // cols) * cell
        mosaic.paste(picture, (x, y))
        draw.rectangle([x, y, x + _THUMB_SIDE - 1, y + 11], fill=(0, 0, 0))
        draw.text((x + 2, y), labels[i], fill=(255, 255, 255), font=font)
    draw.text((2, rows * cell), f"{n} tiles in model order", fill=(0, 0, 0), font=font)
    return mosaic


def _tile_labels(tiled: TiledImage) -> list[str]:
    """'#i name r,c' per tile, so the order the model sees is readable off the picture."""
    grids = tiled.plan.grids
    names = {
        grids.get("fine"): "fine",
        grids.get("coarse", grids.get("grid")): "coarse" if "coarse" in grids else "grid",
    }
    labels: list[str] = []
    last = len(tiled.plan.views) - 1
    for index, view in enumerate(tiled.plan.views):
        if view == SINGLE and tiled.plan.has_thumbnail and index == last:
            labels.append(f"#{len(labels)} thumbnail")
            continue
        name = names.get(view, "grid")
        for k in range(view.n_tiles):
            labels.append(f"#{len(labels)} {name} r{k // view.cols}c{k % view.cols}")
    return labels
