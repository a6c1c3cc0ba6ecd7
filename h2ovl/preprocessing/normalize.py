"""TileNormalizer: uint8 tiles -> normalised float tiles, on the model's device.

The model owns this step so that it runs once, on the accelerator, after the (4x smaller) uint8
tiles have crossed from the data loader. Float tiles are taken as already normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TileNormalizer(nn.Module):
    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self._values = (tuple(mean), tuple(std))
        # Non-persistent: they come from the encoder's config, not from a checkpoint.
        self.register_buffer("mean", self._constant(mean, None), persistent=False)
        self.register_buffer("std", self._constant(std, None), persistent=False)

    @staticmethod
    def _constant(values: Sequence[float], device: torch.device | None) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def _apply(self, fn, recurse: bool = True):
        # Device moves apply to the constants; dtype casts (bf16 precision plugins, `.to(bfloat16)`) do
        # not: rounded to bf16, the mean and std would shift every normalised pixel.
        super()._apply(fn, recurse)
        mean, std = self._values
        self.mean, self.std = self._constant(mean, self.mean.device), self._constant(std, self.std.device)
        return self

    def forward(self, tiles: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`tiles`: uint8 [n, 3, T, T] in 0..255, or float already normalised. Returns `dtype` floats."""
        if tiles.dtype == torch.uint8:
            # Same operations in the same order as torchvision's ToTensor + Normalize.
            tiles = tiles.float().div_(255.0).sub_(self.mean).div_(self.std)
        elif not tiles.is_floating_point():
            raise TypeError(f"tiles must be uint8 (0..255) or float (normalised), got {tiles.dtype}")
        return tiles.to(dtype) if dtype is not None else tiles
