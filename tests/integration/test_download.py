"""download_arcticdem / download_tcvis: only the chunks under the AOI's geometries, idempotent, reported, in Prefect.

The chunk sets are checked against an independent oracle: the chunk footprints built from the cube's published
numbers (DESIGN §3) with shapely, intersected with the AOI as geopandas projects it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from odc.geo import geom
from odc.geo.geobox import GeoBox
from shapely.geometry import LineString, box

from darts_aux import DownloadReport, download_arcticdem, download_tcvis, load_arcticdem, load_tcvis
from darts_aux.errors import InvalidRegionError, OfflineError
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.manifest import Manifest
from darts_aux.products import TCVIS_PIXEL, arcticdem, tcvis
from darts_aux.settings import reload_settings
from darts_aux.sources.gee import row_bands
from darts_aux.store import cube_paths

from .conftest import formula_oracle

# The 32 m cube's chunk grid as DESIGN §3 and the product define it: 1000 px of 32 m (32 km) from the extent's corner.
X0, Y0, SIDE = -4_000_096.0, 4_100_096.0, arcticdem(32).fill_chunk * 32.0
# An 89 km diagonal corridor (4 km wide) across the catalog's south edge (y = 2,899,904 m): 5 of the 9 chunks of its
# bounding box (chunk rows 35–37, columns 139–141). It runs through chunks (37, 139) and (37, 140), across that edge,
# then (36, 140), (35, 140) and (35, 141), crossing each chunk border at least 8 km from a chunk corner.
CORRIDOR_3413 = LineString([(476_000, 2_892_000), (516_000, 2_972_000)]).buffer(2_000).segmentize(1_000)
SPLIT_X = 496_000  # where the corridor is cut into the AOI's two rows
UTM = "EPSG:32651"  # the catalog lies in Yakutia, UTM zone 51 N


def oracle_chunks(frame: gpd.GeoDataFrame) -> set[tuple[int, int]]:
    """(row, col) of every 32 m chunk sharing area with a geometry of the frame (projected by geopandas)."""
    found = set()
    for shape in frame.to_crs("EPSG:3413").geometry:
        left, bottom, right, top = shape.bounds
        for row in range(math.floor((Y0 - top) / SIDE), math.floor((Y0 - bottom) / SIDE) + 1):
            for col in range(math.floor((left - X0) / SIDE), math.floor((right - X0) / SIDE) + 1):
                footprint = box(X0 + col * SIDE, Y0 - (row + 1) * SIDE, X0 + (col + 1) * SIDE, Y0 - row * SIDE)
                if footprint.intersection(shape).area > 0:
                    found.add((row, col))
    return found


def bbox_chunks(frame: gpd.GeoDataFrame) -> int:
    """How many chunks the frame's total bounding box touches (what a bbox-based prefetch would fill)."""
    left, bottom, right, top = frame.to_crs("EPSG:3413").total_bounds
    rows = math.floor((Y0 - bottom) / SIDE) - math.floor((Y0 - top) / SIDE) + 1
    cols = math.floor((right - X0) / SIDE) - math.floor((left - X0) / SIDE) + 1
    return rows * cols


def manifest_statuses(data_dir: Path) -> dict[tuple[int, int], str]:
    """(row, col) → status of every chunk the 32 m cube's manifest lists."""
    product = arcticdem(32)
    latest = Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product)).latest()
    return {(c.row, c.col): r.status for c, r in latest.items()}


def manifest_chunks(data_dir: Path) -> set[tuple[int, int]]:
    return set(manifest_statuses(data_dir))


@dataclass(frozen=True)
class Corridor:
    data_dir: Path
    aoi: gpd.GeoDataFrame
    report: DownloadReport
    file_requests: int


@pytest.fixture(scope="module")
def corridor(catalog: LocalCatalog, tmp_path_factory: pytest.TempPathFactory) -> Corridor:
    """The corridor, given in EPSG:4326 as a GeoDataFrame of two rows (its halves), prefetched in-process."""
    data_dir = tmp_path_factory.mktemp("download") / "data"
    halves = [CORRIDOR_3413.intersection(box(0, 0, SPLIT_X, 9e6)),
              CORRIDOR_3413.intersection(box(SPLIT_X, 0, 9e6, 9e6))]
    aoi = gpd.GeoDataFrame({"name": ["south-west", "north-east"]}, geometry=halves, crs="EPSG:3413").to_crs(4326)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DARTS_AUX_STAC_URL", catalog.stac_url)
        patch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
        reload_settings()
        catalog.reset_log()
        report = download_arcticdem(aoi, data_dir, 32)
        files = len(catalog.requests("files"))
    reload_settings()
    return Corridor(data_dir, aoi, report, files)


def test_corridor_fills_exactly_the_chunks_under_it(corridor: Corridor) -> None:
    expected = oracle_chunks(corridor.aoi)
    assert expected == oracle_chunks(gpd.GeoDataFrame(geometry=[CORRIDOR_3413], crs=3413)), "the oracle is stable"
    assert len(expected) == 5 and bbox_chunks(corridor.aoi) == 9
    assert manifest_chunks(corridor.data_dir) == expected
    report = corridor.report
    assert (report.chunks, report.chunks_fetched, report.chunks_already_full, report.chunks_partial) == (5, 5, 0, 2)
    statuses = manifest_statuses(corridor.data_dir)
    south = {c for c in expected if Y0 - (c[0] + 1) * SIDE < 2_900_000}  # the catalog ends at y = 2,900 km
    assert len(south) == 2 and {c for c, s in statuses.items() if s == "partial"} == south
    assert report.failures == () and report.ok and corridor.file_requests > 0
    assert report.bytes_read > 0 and report.seconds > 0 and report.product == "arcticdem-32m"


def test_corridor_pixels_equal_the_terrain_formula_offline(corridor: Corridor, use_catalog: LocalCatalog) -> None:
    geobox = GeoBox.from_bbox((499_000, 2_939_000, 501_000, 2_941_000), "EPSG:3413", resolution=32)
    assert CORRIDOR_3413.contains(box(*geobox.boundingbox))
    ds = load_arcticdem(geobox, corridor.data_dir, 32, offline=True)
    dem, mask = formula_oracle(use_catalog, 32, roi_window(geobox, arcticdem(32).extent))
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)
    assert use_catalog.requests() == []


def test_second_download_asks_nothing(corridor: Corridor, use_catalog: LocalCatalog, inline: None) -> None:
    again = download_arcticdem(corridor.aoi, corridor.data_dir, 32)
    assert use_catalog.requests() == []
    assert (again.chunks, again.chunks_fetched, again.chunks_already_full, again.chunks_partial) == (5, 0, 3, 2)
    assert again.bytes_read == 0


def test_fifty_scattered_footprints_fill_only_their_chunks(corridor: Corridor, use_catalog: LocalCatalog,
                                                           inline: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Footprints in two corridor chunks (one full, one partial) and in three chunks far outside the catalog."""
    rng = np.random.default_rng(22)
    # Each group's 2 km squares stay at least 2 km inside its chunk: partial (37, 139), full (36, 140), and three
    # chunks with no tile near, (56, 157), (74, 168) and (84, 132), 5–25 km from each one's south-west corner.
    far = [(X0 + col * SIDE + 5_000, Y0 - (row + 1) * SIDE + 5_000) for row, col in [(56, 157), (74, 168), (84, 132)]]
    centres = [*((rng.uniform(452_000, 475_000), rng.uniform(2_888_000, 2_912_000)) for _ in range(20)),
               *((rng.uniform(484_000, 508_000), rng.uniform(2_920_000, 2_944_000)) for _ in range(15)),
               *((x + rng.uniform(0, 20_000), y + rng.uniform(0, 20_000)) for x, y in far for _ in range(5))]
    squares = [box(x - 1_000, y - 1_000, x + 1_000, y + 1_000) for x, y in centres]  # 2 km scene footprints
    aoi = gpd.GeoDataFrame({"scene": range(50)}, geometry=squares, crs=3413).to_crs(UTM)
    expected = oracle_chunks(aoi)
    assert len(aoi) == 50 and len(expected) == 5 and bbox_chunks(aoi) > 40
    before = manifest_chunks(corridor.data_dir)
    report = download_arcticdem(aoi, corridor.data_dir, 32, progress=True)
    assert manifest_chunks(corridor.data_dir) - before == expected - before
    assert len(expected - before) == 3
    assert (report.chunks, report.chunks_fetched, report.chunks_already_full, report.chunks_partial) == (5, 0, 1, 4)
    assert use_catalog.requests("files") == [] and use_catalog.requests("stac"), "only searches: no tile is there"
    progress = capsys.readouterr().err
    assert "downloading arcticdem-32m" in progress and "3/3" in progress
    use_catalog.reset_log()
    assert download_arcticdem(aoi, corridor.data_dir, 32).chunks_partial == 4
    assert use_catalog.requests() == [], "partial chunks checked within the revisit interval are not searched again"


def test_every_aoi_kind_needs_the_same_chunks(corridor: Corridor, use_catalog: LocalCatalog, inline: None) -> None:
    """GeoSeries, shapely + crs, odc-geo Geometry, bbox + crs over the corridor's cube: all settled already."""
    shape = corridor.aoi.geometry.union_all()
    kinds = [corridor.aoi.geometry, (shape, "EPSG:4326"), geom.Geometry(CORRIDOR_3413, "EPSG:3413")]
    for aoi in kinds:
        args = {"crs": aoi[1]} if isinstance(aoi, tuple) else {}
        report = download_arcticdem(aoi[0] if isinstance(aoi, tuple) else aoi, corridor.data_dir, 32, **args)
        assert (report.chunks, report.chunks_already_full, report.chunks_partial, report.chunks_fetched) == (5, 3, 2, 0)
    # Inside the corridor's full chunk (36, 140): x 479,904 … 511,904 m, y 2,916,096 … 2,948,096 m.
    one_chunk = download_arcticdem((484_000, 2_920_000, 508_000, 2_944_000), corridor.data_dir, 32, crs="EPSG:3413")
    assert (one_chunk.chunks, one_chunk.chunks_already_full) == (1, 1)
    assert use_catalog.requests() == []


def test_bad_aoi_and_offline_process_fail_before_any_request(use_catalog: LocalCatalog, inline: None,
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(InvalidRegionError, match="needs crs="):
        download_arcticdem(box(0, 0, 1, 1), tmp_path, 32)
    with pytest.raises(InvalidRegionError, match="contradicts"):
        download_arcticdem(gpd.GeoSeries([box(0, 0, 1, 1)], crs=3413), tmp_path, 32, crs="EPSG:4326")
    with pytest.raises(InvalidRegionError, match="no CRS"):
        download_arcticdem(gpd.GeoSeries([box(0, 0, 1, 1)]), tmp_path, 32)
    monkeypatch.setenv("DARTS_AUX_OFFLINE", "1")
    reload_settings()
    with pytest.raises(OfflineError, match="unset DARTS_AUX_OFFLINE"):
        download_arcticdem((600_000, 3_100_000, 601_000, 3_101_000), tmp_path, 32, crs="EPSG:3413")
    assert use_catalog.requests() == [] and not any(tmp_path.iterdir())


def test_download_tcvis_through_prefect_fills_two_distant_chunks(use_earth_engine: LocalEarthEngine,
                                                                 forget_new_flow_runs: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    product = tcvis()
    side = product.fill_chunk * TCVIS_PIXEL
    corners = [(product.extent.x0 + 125 * side, product.extent.y0 - 18 * side),
               (product.extent.x0 + 130 * side, product.extent.y0 - 17 * side)]
    points = gpd.GeoSeries([shapely.Point(x + side / 2, y - side / 2).buffer(0.05) for x, y in corners], crs=4326)
    report = download_tcvis(points, tmp_path)
    assert (report.chunks, report.chunks_fetched, report.chunks_already_full) == (2, 2, 0) and report.ok
    bands = len(row_bands((product.fill_chunk, product.fill_chunk), 4))
    assert len(use_earth_engine.compute_requests()) == 2 * bands >= 4, "the row bands of two whole chunks"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["download_chunks"])))
    assert any(r.name == "download tcvis-2000-2019: 2 chunks in 2 windows" for r in runs)
    use_earth_engine.reset_log()
    again = download_tcvis(points, tmp_path)
    assert (again.chunks_fetched, again.chunks_already_full) == (0, 2) and use_earth_engine.requests() == []
    geobox = GeoBox.from_bbox(points.iloc[0].bounds, "EPSG:4326", resolution=TCVIS_PIXEL)
    assert int(load_tcvis(geobox, tmp_path, offline=True).valid.sum()) > 0
