"""Pixel shuffle, InternVL's "v2" order: every p x p block of patches becomes one token of width p^2 * d.

Token k = R * (side/p) + C for block row R, block column C; its channels are the block's patches in
row-major order, i.e. einops `n (h p1) (w p2) d -> n (h w) (p1 p2 d)`. Written out because
this exact order is what the released projector weights expect.
"""

from __future__ import annotations

import torch

from h2ovl.errors import SettingError


def shuffle_factor(downsample_ratio: float) -> int:
    """The block side p for a ratio 1/p (0.5 -> 2)."""
    factor = round(1.0 / downsample_ratio)
    if factor < 1 or abs(factor * downsample_ratio - 1.0) > 1e-9:
        raise SettingError(f"downsample_ratio must be 1/p for an integer p >= 1, got {downsample_ratio}")
    return factor


def pixel_shuffle(features: torch.Tensor, downsample_ratio: float) -> torch.Tensor:
    """[n, side*side, d] patch tokens (row-major grid) -> [n, (side/p)^2, p*p*d]."""
    n, length, dim = features.shape
    side = int(round(length**0.5))
    p = shuffle_factor(downsample_ratio)
    if side * side != length or side % p:
        raise ValueError(
            f"{length} patch tokens are not a square grid divisible by {p} (downsample_ratio={downsample_ratio})"
        )
    blocks = features.reshape(n, side // p, p, side // p, p, dim).permute(0, 1, 3, 2, 4, 5)
    return blocks.reshape(n, (side // p) ** 2, p * p * dim)
