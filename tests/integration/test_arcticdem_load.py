"""load_arcticdem end to end against the local catalog: exact pixels, reuse, buffers, CRSs, lazy reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_geobox
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.settings import reload_settings
from darts_aux.store import cube_paths

from .conftest import formula_oracle, published_tiles, rasterio_mosaic

# Around the corner of supertiles 71_46, 71_47, 72_46, 72_47 (x = 600 km, y = 3,100 km). A 32 m fill chunk is
# 1000 px = 32 km across, its borders at x = -4,000,096 + 32,000·k and y = 4,100,096 − 32,000·k; the box crosses
# exactly one of each, x = 607,904 m (between chunk columns 143 and 144) and y = 3,108,096 m (rows 30 and 31).
ROI_32M = GeoBox.from_bbox((590_000, 3_090_000, 630_000, 3_130_000), "EPSG:3413", resolution=32)
CHUNKS_32M = [ChunkId(row, col) for row in (30, 31) for col in (143, 144)]
# Around the 2 m subtile corner at (700 km, 3,200 km). A 2 m fill chunk is 2 km across, its borders at
# x = -4,000,100 + 2,000·k and y = 4,100,100 − 2,000·k; the box crosses exactly x = 699,900 (columns 2349 | 2350)
# and y = 3,200,100 (rows 449 | 450).
ROI_2M = GeoBox.from_bbox((698_500, 3_198_500, 701_500, 3_201_500), "EPSG:3413", resolution=2)
CHUNKS_2M = [ChunkId(row, col) for row in (449, 450) for col in (2349, 2350)]


@dataclass(frozen=True)
class Filled:
    """A cube filled by one load through the Prefect flow, and what that load returned."""

    data_dir: Path
    dataset: xr.Dataset
    window: PixelWindow
    flow_runs: int
    """fill_arcticdem runs on the server right after the fill (which made exactly one of them)."""
    file_requests: list[dict]


def _count_flow_runs(name: str = "fill_arcticdem") -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name]))))


@pytest.fixture(scope="module")
def filled_32m(catalog: LocalCatalog, prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    data_dir = tmp_path_factory.mktemp("cube32")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DARTS_AUX_STAC_URL", catalog.stac_url)
        patch.setenv("DARTS_AUX_ORCHESTRATOR", "prefect")
        reload_settings()
        catalog.reset_log()
        runs_before = _count_flow_runs()  # other modules' fills may already be on the session's server
        dataset = load_arcticdem(ROI_32M, data_dir, 32)
        files = catalog.requests("files")
    reload_settings()
    assert files, "the first load must read tiles"
    runs = _count_flow_runs()
    assert runs - runs_before == 1, "the first load is one flow run"
    return Filled(data_dir, dataset, roi_window(ROI_32M, arcticdem(32).extent), runs, files)


def test_32m_equals_an_independent_rasterio_mosaic(filled_32m: Filled, catalog: LocalCatalog) -> None:
    tiles = published_tiles(catalog, 32, filled_32m.window)
    assert len({t.supertile for t in tiles}) >= 4
    grid = ChunkGrid(arcticdem(32))
    assert grid.chunks(filled_32m.window) == CHUNKS_32M
    oracle = rasterio_mosaic(catalog, 32, filled_32m.window)
    ds = filled_32m.dataset
    assert ds.dem.dtype == np.float32 and ds.datamask.dtype == np.uint8
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])
    assert np.isnan(ds.dem.values).any() and np.isfinite(ds.dem.values).mean() > 0.5


def test_32m_equals_the_terrain_formula(filled_32m: Filled, catalog: LocalCatalog) -> None:
    dem, mask = formula_oracle(catalog, 32, filled_32m.window)
    np.testing.assert_array_equal(filled_32m.dataset.dem.values, dem)
    np.testing.assert_array_equal(filled_32m.dataset.datamask.values, mask)


def test_result_has_the_cube_grid_and_covers_the_geobox(filled_32m: Filled) -> None:
    ds = filled_32m.dataset
    assert ds.odc.geobox == window_geobox(arcticdem(32).extent, filled_32m.window)
    assert ds.odc.geobox.extent.contains(ROI_32M.extent.buffer(-1))
    assert int(ds.spatial_ref) == 3413


def test_tiles_were_read_with_range_requests_only(filled_32m: Filled, catalog: LocalCatalog) -> None:
    tifs = [r for r in filled_32m.file_requests if r["path"].endswith(".tif") and r["method"] == "GET"]
    assert tifs and all(r["range"] and r["status"] == 206 for r in tifs)
    assert {r["method"] for r in filled_32m.file_requests} <= {"GET", "HEAD"}
    sizes = {r["path"]: catalog.root.joinpath(r["path"].split("/files/", 1)[1]).stat().st_size for r in tifs}
    large = [r for r in tifs if sizes[r["path"]] > 4 * 2**20]  # tiny files are legitimately read in one go
    assert large
    too_big = [r for r in large if r["bytes"] >= sizes[r["path"]] * 0.5]
    assert not too_big, f"single requests must fetch parts of a tile, not the tile: {too_big[:3]}"


def test_second_load_sends_no_request_and_starts_no_flow(filled_32m: Filled, use_catalog: LocalCatalog,
                                                         via_prefect: None) -> None:
    again = load_arcticdem(ROI_32M, filled_32m.data_dir, 32)
    assert use_catalog.requests("stac") == [] and use_catalog.requests("files") == []
    assert _count_flow_runs() == filled_32m.flow_runs, "the second load starts no flow"
    xr.testing.assert_identical(again, filled_32m.dataset)


def test_lazy_load_has_the_same_values(filled_32m: Filled, use_catalog: LocalCatalog) -> None:
    lazy = load_arcticdem(ROI_32M, filled_32m.data_dir, 32, persist=False)
    assert lazy.dem.chunks is not None
    np.testing.assert_array_equal(lazy.dem.values, filled_32m.dataset.dem.values)
    np.testing.assert_array_equal(lazy.datamask.values, filled_32m.dataset.datamask.values)
    assert use_catalog.requests() == []


@pytest.mark.parametrize("buffer", [1, 7])
def test_buffer_pads_exactly_k_pixels_per_side(filled_32m: Filled, use_catalog: LocalCatalog, buffer: int) -> None:
    padded = load_arcticdem(ROI_32M, filled_32m.data_dir, 32, buffer=buffer)
    base = filled_32m.dataset
    assert padded.dem.shape == (base.dem.shape[0] + 2 * buffer, base.dem.shape[1] + 2 * buffer)
    assert float(padded.x[buffer]) == float(base.x[0]) and float(padded.y[buffer]) == float(base.y[0])
    inner = padded.isel(y=slice(buffer, -buffer), x=slice(buffer, -buffer))
    np.testing.assert_array_equal(inner.dem.values, base.dem.values)
    dem, _ = formula_oracle(use_catalog, 32, filled_32m.window.pad(buffer))
    np.testing.assert_array_equal(padded.dem.values, dem)


def test_utm_geobox(filled_32m: Filled, use_catalog: LocalCatalog) -> None:
    inner = window_geobox(arcticdem(32).extent, PixelWindow(filled_32m.window.row0 + 50, filled_32m.window.row0 + 400,
                                                           filled_32m.window.col0 + 50, filled_32m.window.col0 + 500))
    lon_lat = inner.extent.to_crs("EPSG:4326").centroid.coords[0]
    utm_zone = int((lon_lat[0] + 180) // 6) + 1
    centre = inner.extent.centroid.to_crs(f"EPSG:326{utm_zone:02d}").coords[0]
    utm = GeoBox.from_bbox((centre[0] - 4_000, centre[1] - 3_000, centre[0] + 4_000, centre[1] + 3_000),
                           f"EPSG:326{utm_zone:02d}", resolution=30)
    _check_other_crs(utm, filled_32m, use_catalog)


def test_epsg4326_geobox(filled_32m: Filled, use_catalog: LocalCatalog) -> None:
    inner = window_geobox(arcticdem(32).extent, PixelWindow(filled_32m.window.row0 + 100, filled_32m.window.row0 + 300,
                                                           filled_32m.window.col0 + 100, filled_32m.window.col0 + 300))
    lon, lat = inner.extent.to_crs("EPSG:4326").centroid.coords[0]
    geographic = GeoBox.from_bbox((lon - 0.05, lat - 0.02, lon + 0.05, lat + 0.02), "EPSG:4326", resolution=0.0003)
    _check_other_crs(geographic, filled_32m, use_catalog)


def _check_other_crs(geobox: GeoBox, filled: Filled, catalog: LocalCatalog) -> None:
    ds = load_arcticdem(geobox, filled.data_dir, 32)
    assert catalog.requests() == [], "the region lies inside the filled chunks"
    assert ds.odc.geobox.crs.epsg == 3413 and ds.odc.geobox.resolution.x == 32
    assert ds.odc.geobox.extent.contains(geobox.extent.to_crs("EPSG:3413"))
    window = roi_window(geobox, arcticdem(32).extent)
    dem, mask = formula_oracle(catalog, 32, window)
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)


def test_2m_equals_an_independent_rasterio_mosaic(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    window = roi_window(ROI_2M, arcticdem(2).extent)
    assert ChunkGrid(arcticdem(2)).chunks(window) == CHUNKS_2M
    tiles = published_tiles(use_catalog, 2, window)
    assert len(tiles) == 4
    ds = load_arcticdem(ROI_2M, tmp_path, 2)
    oracle = rasterio_mosaic(use_catalog, 2, window, tiles)
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])
    dem, _ = formula_oracle(use_catalog, 2, window)
    np.testing.assert_array_equal(ds.dem.values, dem)
    assert np.isfinite(ds.dem.values).mean() > 0.3
    ranged = [r for r in use_catalog.requests("files") if r["path"].endswith(".tif") and r["method"] == "GET"]
    assert ranged and all(r["range"] and r["status"] == 206 for r in ranged), "COGs are read with range requests only"
    assert {Path(r["path"]).name.split("_2m")[0] for r in ranged} == {t.tile_id for t in tiles}
    rows = Manifest(cube_paths(tmp_path, arcticdem(2)).manifest, ChunkGrid(arcticdem(2))).latest(window)
    assert sorted(rows) == CHUNKS_2M and all(r.snapshot_id for r in rows.values())
