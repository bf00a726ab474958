"""The synthetic TCVIS formula: a pure function of lon/lat that makes grid mistakes visible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darts_aux.local.earthengine.tcvis import (
    BANDS,
    EDITIONS,
    FOOTPRINT_SOUTH,
    LAKE_CELL,
    TCVIS_PIXEL,
    VALID,
    pixel_index,
    tcvis_pixels,
    wrap_lon,
)

P = TCVIS_PIXEL
CUBE_LEFT = math.floor(-180 / P)
"""First column of the project's global TCVIS grid (edges on multiples of P from 0°)."""


def block(k0: int, j0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of a block of TCVIS pixels: columns k0…, rows j0… counted northwards."""
    lon = (k0 + np.arange(width) + 0.5) * P
    lat = ((j0 + np.arange(height) + 0.5) * P)[:, None]
    return lon, lat


@pytest.mark.parametrize("edition", EDITIONS)
def test_all_eight_neighbours_differ_in_the_linear_bands(edition: str) -> None:
    out = tcvis_pixels(edition, *block(600_000, 250_000, 300, 300))
    valid = out[VALID] == 1
    for band in BANDS[:2]:
        v = out[band].astype(int)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = v[: v.shape[0] - dy, max(0, -dx) : v.shape[1] - max(0, dx)]
            b = v[dy:, max(0, dx) : v.shape[1] - max(0, -dx) if dx < 0 else None]
            both = (
                valid[: v.shape[0] - dy, max(0, -dx) : v.shape[1] - max(0, dx)]
                & valid[dy:, max(0, dx) : v.shape[1] - max(0, -dx) if dx < 0 else None]
            )
            assert not (a[both] == b[both]).any(), (band, dy, dx)


def test_flips_and_transposes_show() -> None:
    out = tcvis_pixels(EDITIONS[0], *block(600_000, 250_000, 64, 64))
    valid = out[VALID] == 1
    for band in BANDS:
        v = out[band]
        for flip in (np.flipud, np.fliplr, np.transpose):
            both = valid & flip(valid)
            assert (v != flip(v))[both].mean() > 0.9, (band, flip.__name__)


def test_editions_differ_everywhere_that_matters() -> None:
    outs = [tcvis_pixels(e, *block(600_000, 250_000, 200, 200)) for e in EDITIONS]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            for band in BANDS:
                assert (outs[i][band] != outs[j][band]).mean() > 0.8
            assert (outs[i][VALID] != outs[j][VALID]).any()  # lakes change size between editions


def test_broadcast_equals_full_arrays_and_is_deterministic() -> None:
    lon, lat = block(-300_000, 240_000, 50, 40)
    small = tcvis_pixels(EDITIONS[2], lon, lat)
    full = tcvis_pixels(EDITIONS[2], *np.meshgrid(lon, lat[:, 0]))
    again = tcvis_pixels(EDITIONS[2], lon, lat)
    for band in (*BANDS, VALID):
        assert small[band].shape == (40, 50) and small[band].dtype == np.uint8
        np.testing.assert_array_equal(small[band], full[band])
        np.testing.assert_array_equal(small[band], again[band])


def test_float_noise_at_pixel_centres_does_not_matter() -> None:
    lon, lat = block(600_000, 250_000, 100, 100)
    exact = tcvis_pixels(EDITIONS[0], lon, lat)
    for eps in (1e-9, -1e-9, 0.3 * P, -0.3 * P):
        noisy = tcvis_pixels(EDITIONS[0], lon + eps, lat - eps)
        for band in (*BANDS, VALID):
            np.testing.assert_array_equal(noisy[band], exact[band])


def test_longitudes_wrap() -> None:
    np.testing.assert_allclose(
        wrap_lon([-180.0, 179.9, 180.0, 180.1, -180.1, 540.0]), [-180, 179.9, -180, -179.9, 179.9, -180]
    )
    lon = np.array([-179.99, -120.0, 0.0, 179.99])
    for shift in (360.0, -360.0, 720.0):
        a, b = tcvis_pixels(EDITIONS[0], lon, 70.0), tcvis_pixels(EDITIONS[0], lon + shift, 70.0)
        for band in (*BANDS, VALID):
            np.testing.assert_array_equal(a[band], b[band])


def test_cube_columns_cover_the_pixel_index_range() -> None:
    # The project's grid has 1,335,834 columns from floor(-180/P); their centres map onto distinct indices.
    k, _ = pixel_index((CUBE_LEFT + np.array([0, 1, 1_335_832, 1_335_833]) + 0.5) * P, 0.0)
    assert list(k) == [CUBE_LEFT, CUBE_LEFT + 1, CUBE_LEFT + 1_335_832, CUBE_LEFT + 1_335_833]


@pytest.mark.parametrize("chunk", [1000, 3600, 4000, 5000])
def test_lakes_cross_chunk_borders(chunk: int) -> None:
    # Columns either side of a chunk border of the project's grid, 4000 rows: lakes span it.
    border = CUBE_LEFT + chunk * (760_000 // chunk)
    lon = (np.array([border - 1, border]) + 0.5) * P
    lat = ((250_000 + np.arange(4000) + 0.5) * P)[:, None]
    valid = tcvis_pixels(EDITIONS[0], lon, lat)[VALID]
    assert ((valid[:, 0] == 0) & (valid[:, 1] == 0)).sum() > 20


def test_lake_share_is_moderate() -> None:
    valid = tcvis_pixels(EDITIONS[0], *block(600_000, 250_000, 1000, 1000))[VALID]
    assert 0.05 < 1 - valid.mean() < 0.3


def test_lakes_stay_inside_their_cells() -> None:
    out = tcvis_pixels(EDITIONS[1], *block(LAKE_CELL * 3000, LAKE_CELL * 1700, LAKE_CELL * 4, LAKE_CELL * 4))
    valid = out[VALID].reshape(4, LAKE_CELL, 4, LAKE_CELL)
    assert (valid[:, 0, :, :] == 1).all() and (valid[:, :, :, 0] == 1).all()  # cell edges are always dry


def test_no_data_south_of_the_footprint() -> None:
    out = tcvis_pixels(EDITIONS[0], np.linspace(-179, 179, 50), np.array([[FOOTPRINT_SOUTH - 0.001], [0.0], [-60.0]]))
    assert (out[VALID] == 0).all() and all((out[b] == 0).all() for b in BANDS)


def test_unknown_edition() -> None:
    with pytest.raises(KeyError):
        tcvis_pixels("users/someone/else", 0.0, 70.0)
