"""Turning a `TilingPlan` into uint8 tiles: the exact path and the opt-in fast path.

Both resize the whole image once per view (bicubic squash, as InternVL does) and cut the tiles by
array slicing, with no per-tile crop or float copy.
- exact: Pillow's bicubic resize, bit-identical to the InternVL reference pipeline.
- fast:  torch's uint8 antialiased bicubic kernel (SIMD, several times faster than Pillow on one core,
         within a few thousandths of a grey level of it on average), meant to follow a reduced-scale
         JPEG decode (`request_reduced_decode`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from h2ovl.preprocessing.grids import Grid


def render_exact(image: Image.Image, views: tuple[Grid, ...], tile_size: int) -> torch.Tensor:
    t = tile_size
    out = np.empty((sum(v.n_tiles for v in views), 3, t, t), dtype=np.uint8)
    start = 0
    for view in views:
        size = (view.cols * t, view.rows * t)
        resized = image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)
        pixels = np.asarray(resized)  # [rows*T, cols*T, 3]
        grid = pixels.reshape(view.rows, t, view.cols, t, 3).transpose(0, 2, 4, 1, 3)
        out[start : start + view.n_tiles] = grid.reshape(view.n_tiles, 3, t, t)
        start += view.n_tiles
    return torch.from_numpy(out)


def render_fast(image: Image.Image, views: tuple[Grid, ...], tile_size: int) -> torch.Tensor:
    t = tile_size
    # HWC uint8 seen as NCHW is already channels-last, the layout torch's uint8 resize kernel wants.
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0)
    tiles = []
    for view in views:
        size = (view.rows * t, view.cols * t)
        resized = pixels
        if tuple(pixels.shape[-2:]) != size:
            resized = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)
        grid = resized[0].reshape(3, view.rows, t, view.cols, t).permute(1, 3, 0, 2, 4)
        tiles.append(grid.reshape(view.n_tiles, 3, t, t))
    return torch.cat(tiles).contiguous()
