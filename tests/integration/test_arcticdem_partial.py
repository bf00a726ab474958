"""Partial chunks: recorded as such, revisited when a new tile arrives, settled within the revisit interval."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_bounds, window_geobox
from darts_aux.local import LocalCatalog, default_spec
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.store import Cube, cube_paths

from .conftest import CATALOG_ROOT, formula_oracle, point_at

PRODUCT = arcticdem(32)
GRID = ChunkGrid(PRODUCT)
HELD_BACK = "72_48_32m_v4.1"  # x 700–800 km, y 3,100–3,200 km


def _chunk_at(x: float, y: float) -> ChunkId:
    window = roi_window(GeoBox.from_bbox((x - 1, y - 1, x + 1, y + 1), "EPSG:3413", resolution=1), PRODUCT.extent)
    (chunk,) = GRID.chunks(window)
    return chunk


# The chunk holding the corner where supertiles 72_47, 72_48, 73_47 and 73_48 meet (700 km, 3,200 km) spans all
# four: chunk r0028c0146 covers x 671,904 … 703,904 m and y 3,172,096 … 3,204,096 m (32 km = 1000 px of 32 m).
SHARED = _chunk_at(700_000, 3_200_000)
# A region inside SHARED over 72_47 only (west of x = 699,904 m and south of y = 3,199,904 m, its neighbours' edges).
ROI_FIRST = GeoBox.from_bbox((676_000, 3_176_000, 696_000, 3_196_000), "EPSG:3413", resolution=32)
# The catalog's east edge: no tile east of supertile column 49 (x > 900,096 m).
EAST_EDGE = 900_096


@pytest.fixture
def catalog_with_held_back_tile() -> Iterator[LocalCatalog]:
    with LocalCatalog(CATALOG_ROOT, default_spec().with_held_back([HELD_BACK])) as running:
        yield running


def _manifest(data_dir: Path) -> Manifest:
    return Manifest(cube_paths(data_dir, PRODUCT).manifest, GRID)


def test_missing_tile_leaves_chunk_partial_then_arrival_turns_it_full(
    catalog_with_held_back_tile: LocalCatalog, monkeypatch: pytest.MonkeyPatch, inline: None, tmp_path: Path
) -> None:
    catalog = catalog_with_held_back_tile
    point_at(catalog, monkeypatch, orchestrator="inline")
    assert GRID.chunks(roi_window(ROI_FIRST, PRODUCT.extent)) == [SHARED]

    load_arcticdem(ROI_FIRST, tmp_path, 32)
    first = _manifest(tmp_path).latest()[SHARED]
    assert first.status == "partial" and HELD_BACK not in first.items_applied
    assert "72_47_32m_v4.1" in first.items_applied and 0 < first.coverage < 1
    chunk_window = GRID.window(SHARED)
    before = Cube.open(tmp_path, PRODUCT).read(chunk_window)["dem"]
    expected_without, _ = formula_oracle(catalog, 32, chunk_window)
    np.testing.assert_array_equal(before, expected_without)

    # Within the revisit interval the partial chunk is settled: no search, no flow.
    catalog.reset_log()
    load_arcticdem(ROI_FIRST, tmp_path, 32)
    assert catalog.requests() == []

    catalog.publish(HELD_BACK)
    # A load that needs a search (it adds the chunk to the left) revisits the partial chunk too.
    left_window = GRID.window(ChunkId(SHARED.row, SHARED.col - 1))
    second = window_geobox(PRODUCT.extent, PixelWindow(chunk_window.row0, chunk_window.row1,
                                                       left_window.col0, chunk_window.col1))
    catalog.reset_log()
    load_arcticdem(second, tmp_path, 32)
    assert len([r for r in catalog.requests("stac") if r["method"] == "POST"]) >= 1
    after_row = _manifest(tmp_path).latest()[SHARED]
    assert HELD_BACK in after_row.items_applied and set(first.items_applied) <= set(after_row.items_applied)
    after = Cube.open(tmp_path, PRODUCT).read(chunk_window)["dem"]
    had = ~np.isnan(before)
    np.testing.assert_array_equal(after[had], before[had])  # the first items' pixels are kept
    expected_with, _ = formula_oracle(catalog, 32, chunk_window)
    np.testing.assert_array_equal(after, expected_with)
    assert np.isnan(before).sum() > np.isnan(after).sum()
    assert after_row.status == "full" and after_row.coverage == 1.0 and after_row.items_failed == ()
    assert after_row.snapshot_id != first.snapshot_id


def test_chunk_beyond_the_coverage_edge_stays_partial_and_is_not_searched_again(
    use_catalog: LocalCatalog, inline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside chunk r0029c0153 (x 895,904 … 927,904 m, y 3,140,096 … 3,172,096 m), across the east edge.
    coastal = GeoBox.from_bbox((EAST_EDGE - 3_000, 3_150_000, EAST_EDGE + 20_000, 3_170_000), "EPSG:3413",
                               resolution=32)
    (chunk,) = GRID.chunks(roi_window(coastal, PRODUCT.extent))
    chunk_left, _, chunk_right, _ = window_bounds(PRODUCT.extent, GRID.window(chunk))
    inside = (EAST_EDGE - chunk_left) / (chunk_right - chunk_left)  # tiles cover the chunk's full height there
    assert 0 < inside < 1
    ds = load_arcticdem(coastal, tmp_path, 32)
    rows = _manifest(tmp_path).latest()
    assert list(rows) == [chunk]
    assert rows[chunk].status == "partial" and rows[chunk].coverage == pytest.approx(inside) and rows[chunk].snapshot_id
    assert np.isnan(ds.dem.sel(x=slice(EAST_EDGE + 16, None)).values).all()
    assert np.isfinite(ds.dem.sel(x=slice(None, EAST_EDGE - 16)).values).any()

    use_catalog.reset_log()
    load_arcticdem(coastal, tmp_path, 32)
    assert use_catalog.requests() == [], "a partial chunk checked within the revisit interval is settled"

    point_at(use_catalog, monkeypatch, orchestrator="inline", revisit_days="0")
    load_arcticdem(coastal, tmp_path, 32)
    assert use_catalog.requests("stac"), "past the revisit interval the chunk is searched again"
    assert use_catalog.requests("files") == [], "nothing new: no tile is read again"
    again = _manifest(tmp_path).latest()
    assert all(again[c].checked_at > rows[c].checked_at and again[c].snapshot_id == rows[c].snapshot_id for c in rows)
