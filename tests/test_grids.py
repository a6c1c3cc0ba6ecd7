"""The tiling rules, pinned: the test-vector table, tie-break, filters, budgets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2ovl.preprocessing import (
    MSAC,
    DynamicResolution,
    FixedResize,
    Grid,
    candidate_grids,
    closest_grid,
    tokens_per_tile,
)

# The reference test vectors (T=448, max 6, thumbnail on): (W, H) -> dynamic grid, dynamic tiles, MSAC coarse g1, MSAC fine g2, MSAC tiles.
SPEC_VECTORS = [
    ((448, 448), (1, 1), 1, (1, 1), (2, 2), 5),
    ((500, 500), (1, 1), 1, (1, 1), (2, 2), 5),
    ((800, 800), (2, 2), 5, (2, 2), (1, 1), 5),
    ((606, 1000), (2, 3), 7, (2, 3), (3, 2), 13),
    ((1000, 606), (3, 2), 7, (3, 2), (2, 3), 13),
    ((2000, 500), (4, 1), 5, (4, 1), (3, 2), 11),
    ((1920, 1080), (2, 1), 3, (2, 1), (3, 2), 9),
    ((1344, 448), (3, 1), 4, (3, 1), (2, 2), 8),
]


@pytest.mark.parametrize("size, dyn_grid, dyn_tiles, g1, g2, msac_tiles", SPEC_VECTORS)
def test_spec_test_vectors(size, dyn_grid, dyn_tiles, g1, g2, msac_tiles):
    dynamic = DynamicResolution(tile_size=448, max_tiles=6).plan(*size)
    assert dynamic.grids["grid"] == dyn_grid
    assert dynamic.n_tiles == dyn_tiles
    msac = MSAC(tile_size=448, max_tiles=6).plan(*size)
    assert msac.grids["coarse"] == g1
    assert msac.grids["fine"] == g2
    assert msac.n_tiles == msac_tiles


def test_tie_break_prefers_larger_grid_only_for_large_images():
    # (1,1) and (2,2) have the same aspect ratio; (2,2) wins only if W*H > 0.5 * 448^2 * 4.
    assert DynamicResolution().plan(800, 800).grids["grid"] == (2, 2)
    assert DynamicResolution().plan(500, 500).grids["grid"] == (1, 1)
    threshold = 0.5 * 448 * 448 * 4  # 401408 = 634 x 633.1...
    assert DynamicResolution().plan(634, 634).grids["grid"] == (2, 2)  # 401956 > threshold
    assert 633 * 633 < threshold and DynamicResolution().plan(633, 633).grids["grid"] == (1, 1)


def test_equal_difference_on_both_sides_resolved_by_area():
    # Aspect 1.5 is exactly 0.5 from both 1x1 and 2x1: the later (2x1) wins only for a large image.
    candidates = candidate_grids(1, 2)
    assert closest_grid(300, 200, candidates, 448) == (1, 1)
    assert closest_grid(1500, 1000, candidates, 448) == (2, 1)


def test_candidate_order_is_tiles_then_cols():
    grids = candidate_grids(1, 6)
    assert grids[:5] == [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1)]
    assert [g.n_tiles for g in grids] == sorted(g.n_tiles for g in grids)
    assert len(grids) == len(set(grids)) == 14  # 1 + 2 + 2 + 3 + 2 + 4 grids of 1..6 tiles
    assert all(1 <= g.n_tiles <= 6 for g in grids)


def test_fine_pass_filter_excludes_divisors_of_the_coarse_grid():
    assert candidate_grids(3, 6, prior=Grid(2, 3)) == [(3, 2)]
    assert candidate_grids(3, 6, prior=Grid(4, 1)) == [(3, 2)]
    assert candidate_grids(3, 6, prior=Grid(3, 1)) == [(2, 2), (2, 3)]
    assert candidate_grids(3, 6, prior=Grid(1, 1)) == [(2, 2), (2, 3), (3, 2)]
    assert candidate_grids(3, 6, prior=Grid(2, 2)) == []  # -> fine grid falls back to (1, 1)


def test_msac_never_uses_max_tiles_plus_one_and_orders_fine_coarse_thumbnail():
    plan = MSAC(max_tiles=6).plan(606, 1000)
    assert plan.views == ((3, 2), (2, 3), (1, 1))
    assert max(v.n_tiles for v in plan.views) <= 6
    # 1x1 passes contribute nothing of their own; the thumbnail is last.
    assert MSAC().plan(448, 448).views == ((2, 2), (1, 1))
    assert MSAC().plan(800, 800).views == ((2, 2), (1, 1))


def test_msac_tile_counts_with_released_settings_stay_in_5_to_13():
    for w in range(100, 4000, 173):
        for h in range(100, 4000, 191):
            assert 5 <= MSAC().plan(w, h).n_tiles <= 13


def test_thumbnail_rules():
    assert DynamicResolution().plan(500, 500).views == ((1, 1),)  # a 1x1 grid gets no thumbnail
    assert DynamicResolution().plan(606, 1000).views == ((2, 3), (1, 1))
    assert DynamicResolution(use_thumbnail=False).plan(606, 1000).views == ((2, 3),)
    assert MSAC(use_thumbnail=False).plan(606, 1000).views == ((3, 2), (2, 3))
    # Thumbnail off and both passes 1x1 (max 3 tiles, square image): still one tile, never none.
    assert MSAC(max_tiles=3, use_thumbnail=False).plan(448, 448).views == ((1, 1),)


def test_multi_image_samples_split_the_budget_and_switch_msac_off():
    assert DynamicResolution(max_tiles=6).plan_in_sample(2000, 500, n_images=2).grids["grid"] == (3, 1)
    assert DynamicResolution(max_tiles=6).plan_in_sample(2000, 500, n_images=7).n_tiles == 1  # max(1, 6 // 7)
    msac = MSAC(max_tiles=6).plan_in_sample(2000, 500, n_images=2)
    assert set(msac.grids) == {"grid"} and msac.views == ((3, 1), (1, 1))
    assert FixedResize().plan_in_sample(2000, 500, n_images=3).n_tiles == 1


def test_released_inference_gives_each_image_the_whole_budget():
    # The released models' chat code: MSAC off for several images, each with max_tiles (not 6 // n).
    assert DynamicResolution(max_tiles=6).plan_in_sample(2000, 500, n_images=2, split_budget=False).grids["grid"] == (
        4,
        1,
    )
    msac = MSAC(max_tiles=6).plan_in_sample(2000, 500, n_images=3, split_budget=False)
    assert set(msac.grids) == {"grid"} and msac.views == ((4, 1), (1, 1))
    assert MSAC(max_tiles=6).plan_in_sample(2000, 500, n_images=1, split_budget=False) == MSAC(max_tiles=6).plan(
        2000, 500
    )


def test_tokens_per_tile_with_and_without_pixel_shuffle():
    assert tokens_per_tile(448, 14, 0.5) == 256
    assert tokens_per_tile(448, 14, None) == 1024
    assert tokens_per_tile(32, 8, 0.5) == 4
    plan = MSAC().plan(606, 1000)
    assert plan.n_tokens(tokens_per_tile(448, 14, 0.5)) == 13 * 256 == 3328
    assert plan.n_tokens(tokens_per_tile(448, 14, None)) == 13 * 1024
    with pytest.raises(ValueError, match="not a multiple"):
        tokens_per_tile(450, 14, 0.5)
    with pytest.raises(ValueError, match="does not divide"):
        tokens_per_tile(14 * 31, 14, 0.5)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="min_tiles"):
        DynamicResolution(min_tiles=4, max_tiles=2)
    with pytest.raises(ValueError, match="min_tiles"):
        MSAC(max_tiles=0)


sizes = st.integers(min_value=1, max_value=6000)


@settings(max_examples=300, deadline=None)
@given(width=sizes, height=sizes, max_tiles=st.integers(1, 12), thumbnail=st.booleans())
def test_dynamic_grid_is_the_closest_candidate_and_counts_are_bounded(width, height, max_tiles, thumbnail):
    plan = DynamicResolution(max_tiles=max_tiles, use_thumbnail=thumbnail).plan(width, height)
    grid = plan.grids["grid"]
    candidates = candidate_grids(1, max_tiles)
    assert grid in candidates
    best = min(abs(width / height - g.aspect_ratio) for g in candidates)
    assert abs(width / height - grid.aspect_ratio) == best
    assert 1 <= plan.n_tiles <= max_tiles + (1 if thumbnail else 0)
    assert plan.has_thumbnail == (thumbnail and grid.n_tiles > 1)


@settings(max_examples=300, deadline=None)
@given(width=sizes, height=sizes, max_tiles=st.integers(1, 12), thumbnail=st.booleans())
def test_msac_fine_grid_avoids_coarse_seams_and_counts_are_bounded(width, height, max_tiles, thumbnail):
    plan = MSAC(max_tiles=max_tiles, use_thumbnail=thumbnail).plan(width, height)
    coarse, fine = plan.grids["coarse"], plan.grids["fine"]
    if fine != (1, 1):
        assert coarse.cols % fine.cols != 0 and coarse.rows % fine.rows != 0
        assert 3 <= fine.n_tiles <= max_tiles
        others = candidate_grids(3, max_tiles, prior=coarse)
        assert abs(width / height - fine.aspect_ratio) == min(abs(width / height - g.aspect_ratio) for g in others)
    assert 1 <= plan.n_tiles <= 2 * max_tiles + 1
    assert plan.n_tiles == (fine.n_tiles if fine != (1, 1) else 0) + (coarse.n_tiles if coarse != (1, 1) else 0) + (
        1 if thumbnail or (fine == coarse == (1, 1)) else 0
    )
