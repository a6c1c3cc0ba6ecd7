"""FixedResize: the whole image squashed to one T x T tile, the no-tiling baseline."""

from __future__ import annotations

from h2ovl.preprocessing.base import ImagePreprocessor, TilingPlan
from h2ovl.preprocessing.grids import SINGLE


class FixedResize(ImagePreprocessor):
    """One tile per image, whatever its size or aspect ratio."""

    @property
    def max_tiles(self) -> int:
        return 1

    def plan(self, width: int, height: int, max_tiles: int | None = None) -> TilingPlan:
        return TilingPlan(image_size=(width, height), views=(SINGLE,), grids={"grid": SINGLE})
