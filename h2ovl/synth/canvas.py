"""Drawing helpers for synthetic documents: system fonts with a built-in fallback, text placement,
rotation and noise. Everything takes an explicit `random.Random` so output is a function of the seed."""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

#: DejaVu faces shipped on these machines; any missing one falls back to Pillow's built-in font.
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansCondensed.ttf",
)
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@lru_cache(maxsize=256)
def font(size: int, face: str = "DejaVuSans.ttf") -> Font:
    """`face` at `size` px, or Pillow's built-in font where no system font is installed."""
    try:
        return ImageFont.truetype(face, size)
    except OSError:
        return ImageFont.load_default(size=size)


def random_font(rng: random.Random, size: int) -> Font:
    return font(size, rng.choice(FONT_FILES))


def text_size(face: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = face.getbbox(text)
    return right - left, bottom - top


def ink_and_paper(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A dark ink on a light paper (contrast kept high enough to be legible)."""
    paper = tuple(rng.randint(215, 255) for _ in range(3))
    ink = tuple(rng.randint(0, 90) for _ in range(3))
    return ink, paper


def text_patch(text: str, face: Font, ink: tuple, rotation: float) -> Image.Image:
    """The text alone on a transparent patch, rotated; paste it with itself as mask."""
    width, height = text_size(face, text)
    margin = max(2, height // 4)
    patch = Image.new("RGBA", (width + 2 * margin, height + 2 * margin), (0, 0, 0, 0))
    left, top, _, _ = face.getbbox(text)
    ImageDraw.Draw(patch).text((margin - left, margin - top), text, font=face, fill=(*ink, 255))
    return patch.rotate(rotation, expand=True, resample=Image.BICUBIC) if rotation else patch


def add_noise(image: Image.Image, rng: random.Random, strength: float) -> Image.Image:
    """Gaussian pixel noise and an occasional slight blur (scanner / camera look)."""
    if strength <= 0:
        return image
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.2, 0.7)))
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, strength, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def draw_lines(
    image: Image.Image, lines: list[tuple[str, str]], origin: tuple[int, int], face: Font, ink: tuple, gap: float = 1.35
) -> int:
    """`label: value` pairs (label may be empty) drawn top-down from `origin`; returns the y after them."""
    draw = ImageDraw.Draw(image)
    x, y = origin
    line_height = int(text_size(face, "Ag")[1] * gap) + 1
    for label, value in lines:
        draw.text((x, y), f"{label}: {value}" if label else value, font=face, fill=ink)
        y += line_height
    return y
