"""MSAC: multi-scale adaptive cropping as H2OVL uses it (after Mini-Monkey); the 2B model's.

A coarse dynamic-resolution pass picks g1; a fine pass picks g2 among grids of >= 3 tiles whose cols
does not divide g1.cols and whose rows does not divide g1.rows, so its tile seams fall inside the
coarse tiles (the "sawtooth" fix). Model order: fine tiles, coarse tiles, one global thumbnail.
A 1x1 pass contributes no tiles of its own. Multi-image samples fall back to dynamic resolution
per image, as the released inference code does (which also gives each image the whole tile budget,
`split_budget=False`; training splits it).
"""

from __future__ import annotations

from h2ovl.errors import SettingError
from h2ovl.preprocessing.base import ImagePreprocessor, TilingPlan
from h2ovl.preprocessing.dynamic import dynamic_views
from h2ovl.preprocessing.grids import SINGLE, candidate_grids, closest_grid, tile_budget_per_image
from h2ovl.preprocessing.image_io import DEFAULT_MAX_PIXELS


class MSAC(ImagePreprocessor):
    """Args: max_tiles bounds both passes (6 released; the coarse pass never gets max_tiles + 1);
    min_fine_tiles is the fine pass's lower bound (3); use_thumbnail appends the global view.
    Should a plan come out empty (thumbnail off and both passes 1x1), the whole image is one tile."""

    def __init__(
        self,
        tile_size: int | None = None,
        max_tiles: int = 6,
        min_fine_tiles: int = 3,
        use_thumbnail: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fast_path: bool = False,
    ) -> None:
        super().__init__(tile_size=tile_size, max_pixels=max_pixels, fast_path=fast_path)
        candidate_grids(1, max_tiles)  # validates max_tiles
        if min_fine_tiles < 1:
            raise SettingError(f"min_fine_tiles must be >= 1, got {min_fine_tiles}")
        self._max_tiles = max_tiles
        self.min_fine_tiles = min_fine_tiles
        self.use_thumbnail = use_thumbnail

    @property
    def max_tiles(self) -> int:
        return self._max_tiles

    def plan(self, width: int, height: int, max_tiles: int | None = None) -> TilingPlan:
        budget = self._max_tiles if max_tiles is None else max_tiles
        coarse, _ = dynamic_views(width, height, self.tile_size, 1, budget, use_thumbnail=False)
        fine = SINGLE
        if self.min_fine_tiles <= budget:
            fine = closest_grid(
                width, height, candidate_grids(self.min_fine_tiles, budget, prior=coarse), self.tile_size
            )
        views = tuple(g for g in (fine, coarse) if g != SINGLE)
        if self.use_thumbnail or not views:
            views += (SINGLE,)
        return TilingPlan(
            image_size=(width, height),
            views=views,
            grids={"grid": coarse, "coarse": coarse, "fine": fine},
            has_thumbnail=self.use_thumbnail,
        )

    def plan_in_sample(
        self, width: int, height: int, n_images: int, max_tiles: int | None = None, split_budget: bool = True
    ) -> TilingPlan:
        if n_images <= 1:
            return self.plan(width, height, max_tiles=max_tiles)
        budget = self._max_tiles if max_tiles is None else max_tiles
        if split_budget:
            budget = tile_budget_per_image(budget, n_images)
        grid, views = dynamic_views(width, height, self.tile_size, 1, budget, self.use_thumbnail)
        return TilingPlan(image_size=(width, height), views=views, grids={"grid": grid}, has_thumbnail=len(views) > 1)
