"""Tiling geometry as pure functions: which grids are candidates and which one an image gets.

These are InternVL's dynamic-resolution rule and H2OVL's MSAC rule, written once and shared by every preprocessor. Nothing
here touches pixels, so plans (and visual-token counts) can be computed from an image header alone.
"""

from __future__ import annotations

from typing import NamedTuple

from h2ovl.errors import SettingError


class Grid(NamedTuple):
    """A tiling of the image resized to (cols * T, rows * T)."""

    cols: int
    rows: int

    @property
    def n_tiles(self) -> int:
        return self.cols * self.rows

    @property
    def aspect_ratio(self) -> float:
        return self.cols / self.rows


SINGLE = Grid(1, 1)


def candidate_grids(min_tiles: int, max_tiles: int, prior: Grid | None = None) -> list[Grid]:
    """All grids with min_tiles <= cols*rows <= max_tiles, by tile count then cols (a decision: public implementations leave the order open).

    With `prior` (the coarse grid of MSAC), keep only grids whose cols does not divide prior.cols
    and whose rows does not divide prior.rows, so the fine pass cuts across the coarse seams.
    """
    if min_tiles < 1 or max_tiles < min_tiles:
        raise SettingError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    grids = [
        Grid(cols, rows)
        for cols in range(1, max_tiles + 1)
        for rows in range(1, max_tiles // cols + 1)
        if cols * rows >= min_tiles
    ]
    if prior is not None:
        grids = [g for g in grids if prior.cols % g.cols != 0 and prior.rows % g.rows != 0]
    return sorted(grids, key=lambda g: (g.n_tiles, g.cols))


def closest_grid(width: int, height: int, candidates: list[Grid], tile_size: int) -> Grid:
    """InternVL's choice: the closest aspect ratio; on an exact tie a larger grid wins only if the
    image has more than half the pixels that grid would show (so small images are not blown up).
    """
    aspect = width / height
    area = width * height
    best, best_diff = SINGLE, float("inf")
    for grid in candidates:
        diff = abs(aspect - grid.aspect_ratio)
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * grid.n_tiles:
            best = grid
    return best


def tile_budget_per_image(max_tiles: int, n_images: int) -> int:
    """InternVL's split of the tile budget across the images of one sample."""
    return max(1, max_tiles // max(1, n_images))


def tokens_per_tile(tile_size: int, patch_size: int, downsample_ratio: float | None) -> int:
    """(tile/patch)^2 * ratio^2 visual tokens per tile; `None` means pixel shuffle off."""
    if tile_size % patch_size:
        raise SettingError(f"tile_size {tile_size} is not a multiple of patch_size {patch_size}")
    side = tile_size // patch_size
    if downsample_ratio is None:
        return side * side
    shuffled = side * downsample_ratio
    if abs(shuffled - round(shuffled)) > 1e-9:
        raise SettingError(
            f"pixel shuffle ratio {downsample_ratio} does not divide the {side}x{side} patch grid "
            f"(tile_size={tile_size}, patch_size={patch_size})"
        )
    return int(round(shuffled)) ** 2
