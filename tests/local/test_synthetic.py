"""The synthetic formulas: determinism, detail, holes across seams, buffer patches, the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from darts_aux.local.spec import SUBTILE_CORNER, SUPERTILE_CORNER, default_spec
from darts_aux.local.synthetic import (
    SEAM_HOLES,
    expected_pixels,
    hole_mask,
    pixel_centres,
    terrain,
    tile_patch_mask,
    tile_patches,
    tile_pixels,
    tile_valid_mask,
)
from darts_aux.local.tiles import TileRef


def test_terrain_is_float32_and_pointwise() -> None:
    x = np.arange(650_001.0, 650_101.0, 2.0)[None, :]
    y = np.arange(3_150_099.0, 3_149_999.0, -2.0)[:, None]
    grid = terrain(x, y)
    assert grid.dtype == np.float32 and grid.shape == (50, 50)
    xx, yy = np.broadcast_arrays(x, y)
    np.testing.assert_array_equal(terrain(xx.ravel(), yy.ravel()).reshape(grid.shape), grid)


@pytest.mark.parametrize("res", [2.0, 10.0, 32.0])
def test_half_pixel_shift_is_visible(res: float) -> None:
    x = 700_000.0 + (np.arange(200) + 0.5) * res
    y = np.full_like(x, 3_200_000.0 + 0.5 * res)
    diff = np.abs(terrain(x, y) - terrain(x + res / 2, y))
    assert np.median(diff) > 0.01


def test_terrain_has_relief_and_values_at_or_below_zero() -> None:
    x = np.linspace(500_016.0, 799_984.0, 600)[None, :]
    y = np.linspace(3_299_984.0, 3_000_016.0, 600)[:, None]
    z = terrain(x, y)
    assert z.max() - z.min() > 400
    assert (z <= 0).any() and (z > 0).any()


def test_seam_holes_cross_seams() -> None:
    seams_x = {500_000.0, 600_000.0, 700_000.0, 550_000.0}
    seams_y = {3_000_000.0, 3_100_000.0, 3_200_000.0, 3_300_000.0, 3_150_000.0}
    crossing = [
        d for d in SEAM_HOLES if any(abs(d.cx - s) < d.r for s in seams_x) or any(abs(d.cy - s) < d.r for s in seams_y)
    ]
    assert len(crossing) == len(SEAM_HOLES)
    for d in SEAM_HOLES:
        assert hole_mask(np.array([d.cx]), np.array([d.cy]))[0]


def test_hole_mask_separable_equals_pointwise() -> None:
    tile = TileRef.parse("72_47_32m_v4.1")
    x, y = pixel_centres(tile, Window(0, 0, 3131, 3131))
    grid = hole_mask(x, y)
    assert 0.005 < grid.mean() < 0.2
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 3131, 2000), rng.integers(0, 3131, 2000)
    np.testing.assert_array_equal(hole_mask(x[0, cols], y[rows, 0]), grid[rows, cols])


def test_corner_regions_are_mostly_valid_but_have_holes() -> None:
    for cx, cy in (SUBTILE_CORNER, SUPERTILE_CORNER):
        x = (cx - 3_000 + 1 + 2 * np.arange(3_000))[None, :]
        y = (cy + 3_000 - 1 - 2 * np.arange(3_000))[:, None]
        holes = hole_mask(x, y)
        assert 0.005 < holes.mean() < 0.1


@pytest.mark.parametrize("item_id", ["72_47_32m_v4.1", "72_47_10m_v4.1", "73_48_1_1_2m_v4.1"])
def test_patches_lie_in_the_outer_buffer_strip(item_id: str) -> None:
    tile = TileRef.parse(item_id)
    x0, y0, x1, y1 = tile.nominal_bounds
    bx0, by0, bx1, by1 = tile.bounds
    patches = tile_patches(tile)
    assert len(patches) == 12
    for px0, py0, px1, py1 in patches:
        assert bx0 <= px0 < px1 <= bx1 and by0 <= py0 < py1 <= by1
        outside_x = px1 <= x0 or px0 >= x1
        outside_y = py1 <= y0 or py0 >= y1
        assert outside_x != outside_y  # beyond exactly one nominal edge, away from the corners


def test_neighbour_fills_patch_in_oracle() -> None:
    """Where a tile has a buffer patch, the mosaic is still valid (from the neighbour's interior)."""
    spec = default_spec()
    tile = TileRef.parse("72_47_32m_v4.1")
    east = tile_patches(tile)[5]  # third patch of the "E" side
    x = np.arange(east[0] + 16 - (east[0] - 16) % 32, east[2], 32.0)[None, :]
    y = np.arange(east[1] + 16 - (east[1] - 16) % 32, east[3], 32.0)[::-1][:, None]
    own = tile_patch_mask(tile, x, y)
    assert own.any()
    dem, mask = expected_pixels(32, x, y, spec)
    holes = hole_mask(x, y)
    assert (mask[own & ~holes] == 1).all()
    only_self, _ = expected_pixels(32, x, y, spec, items={tile.item_id})
    assert np.isnan(only_self[own]).all()


def test_tile_pixels_match_oracle_where_valid() -> None:
    spec = default_spec()
    tile = TileRef.parse("73_48_1_1_2m_v4.1")
    window = Window(0, 24_600, 800, 500)
    dem, mask = tile_pixels(tile, window)
    x, y = pixel_centres(tile, window)
    valid = mask == 1
    np.testing.assert_array_equal(valid, tile_valid_mask(tile, spec.windows(tile), x, y))
    edem, emask = expected_pixels(2, x, y, spec)
    np.testing.assert_array_equal(dem[valid], edem[valid])
    assert (emask[valid] == 1).all()
    assert (dem[~valid] == -9999).all()


def test_oracle_outside_every_tile_is_nodata() -> None:
    dem, mask = expected_pixels(32, np.array([5_000_016.0]), np.array([16.0]))
    assert np.isnan(dem).all() and (mask == 0).all()
    # above the coast: no tile
    dem, mask = expected_pixels(32, np.array([650_016.0]), np.array([3_300_200.0 + 16]))
    assert (mask == 0).all()
