"""AOI → chunks: geometries, not their bounding box; GeoBoxes as loads see them; across the antimeridian; windows."""

from __future__ import annotations

import pytest
import shapely
from odc.geo import geom
from odc.geo.geobox import GeoBox
from shapely.geometry import LineString, Point, box

from darts_aux.aoi import aoi_chunks, chunk_windows
from darts_aux.errors import EmptyRegionError, InvalidRegionError, OutsideExtentError
from darts_aux.grid import ChunkGrid, ChunkId, roi_window
from darts_aux.products import TCVIS_PIXEL, arcticdem, tcvis

DEM = arcticdem(32)
X0, Y0 = -4_000_096.0, 4_100_096.0
SIDE = DEM.fill_chunk * DEM.resolution
"""Edge of one fill chunk of the 32 m cube, in metres."""


def chunk_bounds(row0: int, row1: int, col0: int, col1: int) -> tuple[float, float, float, float]:
    """The box of chunks rows row0..row1, cols col0..col1 (inclusive) of the 32 m cube."""
    return (X0 + col0 * SIDE, Y0 - (row1 + 1) * SIDE, X0 + (col1 + 1) * SIDE, Y0 - row0 * SIDE)


def test_a_box_on_chunk_borders_needs_no_neighbour() -> None:
    chunks = aoi_chunks(DEM, chunk_bounds(5, 6, 28, 29), "EPSG:3413")
    assert chunks == [ChunkId(5, 28), ChunkId(5, 29), ChunkId(6, 28), ChunkId(6, 29)]


def test_an_l_shape_skips_the_empty_corner_of_its_bounding_box() -> None:
    left, bottom, right, top = chunk_bounds(5, 7, 28, 30)
    ell = box(left + 1, bottom + 1, left + SIDE - 1, top - 1).union(box(left + 1, bottom + 1, right - 1, bottom + SIDE))
    chunks = aoi_chunks(DEM, ell, "EPSG:3413")
    assert len(chunks) == 5 and ChunkId(5, 30) not in chunks and ChunkId(6, 29) not in chunks


def test_points_and_lines_need_the_chunks_they_touch() -> None:
    x, y = X0 + 28.5 * SIDE, Y0 - 5.5 * SIDE
    assert aoi_chunks(DEM, Point(x, y), "EPSG:3413") == [ChunkId(5, 28)]
    line = LineString([(x, y), (x + 2 * SIDE, y)])
    assert aoi_chunks(DEM, line, "EPSG:3413") == [ChunkId(5, 28), ChunkId(5, 29), ChunkId(5, 30)]


def test_a_geobox_needs_exactly_the_chunks_its_load_reads() -> None:
    geobox = GeoBox.from_bbox((440_000, 6_592_000, 466_000, 6_620_000), "EPSG:32651", resolution=10)
    expected = ChunkGrid(DEM).chunks(roi_window(geobox, DEM.extent, 16))
    assert aoi_chunks(DEM, geobox, buffer=16) == expected


def test_buffer_grows_the_geometry_by_cube_pixels() -> None:
    left, bottom, right, top = chunk_bounds(5, 5, 28, 28)
    inner = box(left + 100, bottom + 100, right - 100, top - 100)
    assert aoi_chunks(DEM, inner, "EPSG:3413", buffer=3) == [ChunkId(5, 28)]  # 96 m < 100 m
    assert len(aoi_chunks(DEM, inner, "EPSG:3413", buffer=4)) == 9  # 128 m reaches all eight neighbours


def test_tcvis_box_past_180_needs_both_sides_of_the_antimeridian() -> None:
    product = tcvis()
    grid = ChunkGrid(product)
    chunks = aoi_chunks(product, (179.9, 66.0, 180.1, 66.05), "EPSG:4326")
    cols = {c.col for c in chunks}
    assert cols == {grid.shape[1] - 1, 0}
    same = aoi_chunks(product, geom.box(179.9, 66.0, 180.1, 66.05, "EPSG:4326"))
    assert same == chunks
    geobox = GeoBox.from_bbox((179.9, 66.0, 180.1, 66.05), "EPSG:4326", resolution=TCVIS_PIXEL)
    assert aoi_chunks(product, geobox) == grid.chunks(roi_window(geobox, product.extent))


def test_chunk_windows_hold_only_the_given_chunks() -> None:
    chunks = [ChunkId(5, 28), ChunkId(5, 29), ChunkId(6, 28), ChunkId(6, 29), ChunkId(7, 30), ChunkId(9, 2)]
    windows = chunk_windows(DEM, chunks)
    grid = ChunkGrid(DEM)
    assert len(windows) == 3
    assert sorted(c for w in windows for c in grid.chunks(w)) == sorted(chunks)


@pytest.mark.parametrize(("aoi", "crs", "error", "match"), [
    (box(0, 0, 1, 1), None, InvalidRegionError, "needs crs="),
    ((1, 2, 3), "EPSG:3413", InvalidRegionError, "aoi must be"),
    ((5, 0, 1, 1), "EPSG:3413", EmptyRegionError, "no area"),
    (shapely.Polygon(), "EPSG:3413", EmptyRegionError, "empty"),
    (box(9e6, 9e6, 9.1e6, 9.1e6), "EPSG:3413", OutsideExtentError, "outside"),
    (geom.box(0, 0, 1, 1, "EPSG:3413"), "EPSG:4326", InvalidRegionError, "contradicts"),
])
def test_bad_aois_say_what_to_pass(aoi: object, crs: str | None, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        aoi_chunks(DEM, aoi, crs)
