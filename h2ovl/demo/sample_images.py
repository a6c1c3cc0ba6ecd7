"""Deterministic document-like sample images at the aspect ratios that exercise every tiling rule.

Rendered with a system font (DejaVu) when present, Pillow's built-in font otherwise.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from h2ovl.synth.canvas import font

#: name -> (width, height): square, tall receipt, wide banner, A4 scan, screenshot, extreme strip.
SAMPLE_SIZES: dict[str, tuple[int, int]] = {
    "square_500x500": (500, 500),
    "receipt_606x1000": (606, 1000),
    "banner_2000x500": (2000, 500),
    "page_1240x1754": (1240, 1754),
    "screenshot_1920x1080": (1920, 1080),
    "strip_3000x120": (3000, 120),
}

_WORDS = "invoice total amount due date account number receipt subtotal tax paid cash card change".split()


def render_document(width: int, height: int, seed: int) -> Image.Image:
    """Lines of small text on an off-white page: the kind of image where tiling matters."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    size = max(8, min(width, height) // 18)
    face = font(size)
    y = size // 2
    while y + size < height:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        line = f"{words} {rng.randint(0, 99999):05d}"
        draw.text((size // 2, y), line, fill=(rng.randint(0, 60),) * 3, font=face)
        y += int(size * 1.5)
    return image


def write_sample_images(out_dir: Path, seed: int = 0) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, (width, height)) in enumerate(SAMPLE_SIZES.items()):
        path = out_dir / f"{name}.png"
        render_document(width, height, seed + index).save(path)
        paths.append(path)
    return paths
