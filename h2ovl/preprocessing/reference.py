"""The straightforward InternVL-style pipeline, kept as the yardstick for our pixels and our speed.

Decode, resize once, crop each tile with PIL, then convert and normalise tile by tile, exactly as
InternVL's `dynamic_preprocess` + `build_transform` do. Tests check that `ImagePreprocessor` gives the
same pixels; `benchmarks/preprocess.py` times both. Not used for training.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms

from h2ovl.preprocessing.base import TilingPlan
from h2ovl.preprocessing.normalize import IMAGENET_MEAN, IMAGENET_STD

_TO_NORMALISED_TENSOR = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def reference_tiles(image: Image.Image, plan: TilingPlan, tile_size: int) -> list[Image.Image]:
    """PIL tiles of `plan`, each view resized from the original and cropped tile by tile."""
    tiles = []
    for view in plan.views:
        resized = image.resize((view.cols * tile_size, view.rows * tile_size), Image.Resampling.BICUBIC)
        for i in range(view.n_tiles):
            col, row = i % view.cols, i // view.cols
            box = (col * tile_size, row * tile_size, (col + 1) * tile_size, (row + 1) * tile_size)
            tiles.append(resized.crop(box))
    return tiles


def reference_pixel_values(image: Image.Image, plan: TilingPlan, tile_size: int) -> torch.Tensor:
    """Normalised float tiles [n, 3, T, T], the way InternVL feeds its model."""
    return torch.stack([_TO_NORMALISED_TENSOR(tile) for tile in reference_tiles(image, plan, tile_size)])
