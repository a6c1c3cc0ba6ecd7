"""Shared fixtures: small images written to a temporary folder by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: any mistake in tile order or cropping changes them."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def write_image(tmp_path: Path):
    def write(image: Image.Image, name: str, **save_args) -> Path:
        path = tmp_path / name
        image.save(path, **save_args)
        return path

    return write
