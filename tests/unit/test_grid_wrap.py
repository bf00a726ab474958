"""Global lon/lat grid (TCVIS): regions across the antimeridian continue at column 0."""

from __future__ import annotations

import pytest
from odc.geo.geobox import GeoBox

from darts_aux.errors import UnknownEditionError
from darts_aux.grid import ChunkGrid, ChunkId, roi_window, window_geobox, window_parts
from darts_aux.products import TCVIS_EDITIONS, TCVIS_PIXEL, tcvis

PRODUCT = tcvis()
EXTENT = PRODUCT.extent


def test_tcvis_grid_is_odc_geos_global_grid() -> None:
    reference = GeoBox.from_bbox((-180, -90, 180, 90), "EPSG:4326", resolution=TCVIS_PIXEL)
    assert tuple(reference.shape) == EXTENT.shape
    assert reference.affine == EXTENT.affine


@pytest.mark.parametrize("edition", [*TCVIS_EDITIONS, "2003-2022"])
def test_editions_are_separate_cubes(edition: str) -> None:
    assert tcvis(edition).key.startswith("tcvis-20")
    assert len({tcvis(e).key for e in TCVIS_EDITIONS}) == 4


def test_unknown_edition_is_rejected() -> None:
    with pytest.raises(UnknownEditionError, match="DARTS_AUX_TCVIS_EDITION"):
        tcvis("users/someone/else")


def test_lonlat_geobox_across_the_antimeridian_is_one_window() -> None:
    roi = GeoBox.from_bbox((179.5, 65.5, 180.5, 66.5), "EPSG:4326", resolution=TCVIS_PIXEL)
    window = roi_window(roi, EXTENT)
    cols = EXTENT.shape[1]
    assert window.col0 < cols < window.col1
    parts = window_parts(EXTENT, window)
    assert [p.col0 for p, _ in parts] == [window.col0, 0]
    assert sum(p.shape[1] for p, _ in parts) == window.shape[1]
    assert abs(window.shape[1] * TCVIS_PIXEL - 1.0) < 2 * TCVIS_PIXEL
    grid = ChunkGrid(PRODUCT)
    chunks = grid.chunks(window)
    cols_touched = {c.col for c in chunks}
    assert {grid.shape[1] - 1, 0} <= cols_touched and max(cols_touched - {0}) >= grid.shape[1] - 2
    gbox = window_geobox(EXTENT, window)
    assert gbox.extent.boundingbox.left < 179.5 and gbox.extent.boundingbox.right > 180.5


def test_projected_geobox_across_the_antimeridian_is_unwrapped() -> None:
    utm60 = GeoBox.from_bbox((610_000, 7_320_000, 660_000, 7_360_000), "EPSG:32660", resolution=30)
    lon_span = utm60.extent.to_crs("EPSG:4326").boundingbox
    assert lon_span.left < -179 and lon_span.right > 179  # it really crosses
    window = roi_window(utm60, EXTENT)
    assert window.col1 > EXTENT.shape[1] and window.shape[1] * TCVIS_PIXEL < 2.0


def test_chunk_grid_of_the_last_column_is_short() -> None:
    grid = ChunkGrid(PRODUCT)
    last = grid.window(ChunkId(0, grid.shape[1] - 1))
    assert last.col1 == EXTENT.shape[1] and last.shape[1] == EXTENT.shape[1] - last.col0 < PRODUCT.fill_chunk
