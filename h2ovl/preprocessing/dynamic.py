"""DynamicResolution: InternVL's tiling, the 0.8B model's preprocessor.

The image is squashed to the grid whose aspect ratio is closest to its own, among grids of
min_tiles..max_tiles tiles, cut row-major, and followed by a global thumbnail when it has > 1 tile.
"""

from __future__ import annotations

from h2ovl.preprocessing.base import ImagePreprocessor, TilingPlan
from h2ovl.preprocessing.grids import SINGLE, Grid, candidate_grids, closest_grid
from h2ovl.preprocessing.image_io import DEFAULT_MAX_PIXELS


def dynamic_views(
    width: int, height: int, tile_size: int, min_tiles: int, max_tiles: int, use_thumbnail: bool
) -> tuple[Grid, tuple[Grid, ...]]:
    """The chosen grid and the views it produces (grid, then thumbnail if any)."""
    grid = closest_grid(width, height, candidate_grids(min_tiles, max_tiles), tile_size)
    views = (grid, SINGLE) if use_thumbnail and grid.n_tiles > 1 else (grid,)
    return grid, views


class DynamicResolution(ImagePreprocessor):
    """Args: min_tiles/max_tiles bound the grid's tile count (1..6 released); use_thumbnail appends
    the whole image as a last tile when the grid has more than one tile. See `ImagePreprocessor`."""

    def __init__(
        self,
        tile_size: int | None = None,
        min_tiles: int = 1,
        max_tiles: int = 6,
        use_thumbnail: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fast_path: bool = False,
    ) -> None:
        super().__init__(tile_size=tile_size, max_pixels=max_pixels, fast_path=fast_path)
        candidate_grids(min_tiles, max_tiles)  # validates the bounds at construction time
        self.min_tiles = min_tiles
        self._max_tiles = max_tiles
        self.use_thumbnail = use_thumbnail

    @property
    def max_tiles(self) -> int:
        return self._max_tiles

    def plan(self, width: int, height: int, max_tiles: int | None = None) -> TilingPlan:
        budget = self._max_tiles if max_tiles is None else max_tiles
        grid, views = dynamic_views(
            width, height, self.tile_size, min(self.min_tiles, budget), budget, self.use_thumbnail
        )
        return TilingPlan(image_size=(width, height), views=views, grids={"grid": grid}, has_thumbnail=len(views) > 1)
