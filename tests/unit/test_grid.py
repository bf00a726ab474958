"""Chunk geometry: ROI → window → chunks, against hand-computed pixel arithmetic."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from darts_aux.errors import EmptyRegionError, InvalidBufferError, InvalidResolutionError, OutsideExtentError
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_bounds, window_from_bounds, window_geobox
from darts_aux.products import arcticdem, arcticdem_resolution, tcvis


@pytest.mark.parametrize(
    ("resolution", "shape", "x0", "y0"),
    [(2, (3_750_100, 3_700_100), -4_000_100, 4_100_100),
     (10, (750_020, 740_020), -4_000_100, 4_100_100),
     (32, (234_381, 231_256), -4_000_096, 4_100_096)],
)
def test_extents_match_the_pgc_tile_grid(resolution: int, shape: tuple[int, int], x0: float, y0: float) -> None:
    extent = arcticdem(resolution).extent
    assert extent.shape == shape
    assert (extent.x0, extent.y0) == (x0, y0)
    assert extent.bounds[2] == -x0 - 600_000 and extent.bounds[1] == -(y0 - 700_000)


@pytest.mark.parametrize("bad", [5, 0, -2, 2.0 + 0.5, True, "2"])
def test_unknown_resolution_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidResolutionError, match="use one of 2, 10, 32"):
        arcticdem(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("resolution", [2, 10, 32])
def test_arcticdem_resolution_is_the_cubes_own(resolution: int) -> None:
    found = arcticdem_resolution(arcticdem(resolution))
    assert found == resolution and type(found) is int


def test_arcticdem_resolution_of_another_product_is_refused() -> None:
    with pytest.raises(InvalidResolutionError, match="tcvis-2000-2019 is not an ArcticDEM cube"):
        arcticdem_resolution(tcvis())


def test_chunk_id_round_trips() -> None:
    assert ChunkId.parse(str(ChunkId(12, 345))) == ChunkId(12, 345)
    with pytest.raises(ValueError):
        ChunkId.parse("12-345")


def test_chunk_windows_tile_the_extent_and_stop_at_the_edge() -> None:
    product = arcticdem(32)
    grid = ChunkGrid(product)
    rows, cols = grid.shape
    assert (rows, cols) == (math.ceil(234_381 / product.fill_chunk), math.ceil(231_256 / product.fill_chunk))
    last = grid.window(ChunkId(rows - 1, cols - 1))
    assert (last.row1, last.col1) == product.extent.shape
    assert last.row0 == (rows - 1) * product.fill_chunk


def test_chunks_of_a_window_cover_it_exactly() -> None:
    grid = ChunkGrid(arcticdem(10))
    n = grid.chunk
    window = PixelWindow(n - 1, 2 * n + 1, 5 * n, 5 * n + 1)
    assert grid.chunks(window) == [ChunkId(r, 5) for r in (0, 1, 2)]


def test_roi_in_cube_crs_maps_to_the_same_pixels() -> None:
    product = arcticdem(32)
    window = PixelWindow(1000, 1100, 2000, 2150)
    geobox = window_geobox(product.extent, window)
    assert roi_window(geobox, product.extent) == window
    assert roi_window(geobox, product.extent, buffer=3) == window.pad(3)
    assert window_from_bounds(product.extent, window_bounds(product.extent, window)) == window


def test_utm_geobox_is_covered_by_its_projected_window() -> None:
    product = arcticdem(32)
    utm = GeoBox.from_bbox((400_000, 7_600_000, 410_000, 7_610_000), crs="EPSG:32606", resolution=30)
    window = roi_window(utm, product.extent)
    cube_box = window_geobox(product.extent, window).extent
    assert cube_box.contains(utm.extent.to_crs("EPSG:3413"))
    # snapped outward by less than one pixel on every side
    assert window.shape[0] * 32 < cube_box.boundingbox.span_y + 1


def test_negative_or_fractional_buffer_is_rejected() -> None:
    geobox = window_geobox(arcticdem(32).extent, PixelWindow(0, 10, 0, 10))
    for bad in (-1, 1.5, 10**9):
        with pytest.raises(InvalidBufferError):
            roi_window(geobox, arcticdem(32).extent, buffer=bad)  # type: ignore[arg-type]


def test_empty_or_outside_geobox_is_rejected() -> None:
    extent = arcticdem(32).extent
    with pytest.raises(EmptyRegionError):
        roi_window(GeoBox((0, 10), Affine(32, 0, 0, 0, -32, 0), "EPSG:3413"), extent)
    with pytest.raises(EmptyRegionError):
        roi_window(GeoBox((10, 10), Affine(0, 0, 0, 0, -32, 0), "EPSG:3413"), extent)
    with pytest.raises(EmptyRegionError):
        roi_window("not a geobox", extent)  # type: ignore[arg-type]
    far = GeoBox.from_bbox((5_000_000, 5_000_000, 5_001_000, 5_001_000), crs="EPSG:3413", resolution=32)
    with pytest.raises(OutsideExtentError, match="outside the cube extent"):
        roi_window(far, extent)
