"""The served catalog: STAC search through the gateway, byte ranges, request log, tile index, publish."""

from __future__ import annotations

import io
import os
import socket
import zipfile
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pytest
import rasterio
from pystac_client import Client
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping

from darts_aux.local.catalog import GDAL_HTTP_ENV, LocalCatalog
from darts_aux.local.generate import BuildResult
from darts_aux.local.spec import SUBTILE_CORNER, SUPERTILE_CORNER, CatalogSpec, around
from darts_aux.local.synthetic import pixel_centres
from darts_aux.local.tiles import TileRef, collection_id

COLLECTIONS = [collection_id(r) for r in (2, 10, 32)]


def lonlat(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    """A densified EPSG:4326 polygon of an EPSG:3413 box."""
    return transform_geom("EPSG:3413", "EPSG:4326", mapping(box(*bounds).segmentize(1_000.0)))  # type: ignore[no-any-return]


def expected_ids(spec: CatalogSpec, bounds: tuple[float, float, float, float], published: set[str]) -> set[str]:
    x0, y0, x1, y1 = bounds
    return {
        t.item_id
        for t in spec.all_tiles()
        if t.item_id in published and t.bounds[0] < x1 and t.bounds[2] > x0 and t.bounds[1] < y1 and t.bounds[3] > y0
    }


def index_ids(cat: LocalCatalog) -> set[str]:
    """dem_ids listed in the served tile index zip."""
    with zipfile.ZipFile(cat.tile_index_path) as zf:
        return {i for name in zf.namelist() for i in gpd.read_parquet(io.BytesIO(zf.read(name))).dem_id}


def http() -> httpx.Client:
    return httpx.Client(timeout=10.0, trust_env=False)


@pytest.mark.parametrize(
    "bounds",
    [
        around(SUPERTILE_CORNER, 5_000.0),  # 4 supertiles, 4 subtiles
        around(SUBTILE_CORNER, 5_000.0),  # 1 supertile, 4 subtiles of it
        (520_000.0, 3_020_000.0, 780_000.0, 3_280_000.0),  # the whole block, away from the ring
        (450_000.0, 2_950_000.0, 455_000.0, 2_955_000.0),  # one ring tile only
    ],
)
def test_search_intersects_returns_exactly_the_expected_items(catalog: LocalCatalog, bounds: tuple[float, ...]) -> None:
    client = Client.open(catalog.stac_url)
    search = client.search(collections=COLLECTIONS, intersects=lonlat(bounds), max_items=None)  # type: ignore[arg-type]
    found = {item.id for item in search.items()}
    assert found == expected_ids(catalog.spec, bounds, set(catalog.published()))  # type: ignore[arg-type]


def test_items_carry_projection_fields_and_gateway_hrefs(catalog: LocalCatalog) -> None:
    client = Client.open(catalog.stac_url)
    items = list(client.search(ids=["73_48_1_1_2m_v4.1", "72_47_32m_v4.1"], max_items=None).items())
    assert len(items) == 2
    for item in items:
        tile = TileRef.parse(item.id)
        props = item.properties
        assert props["proj:code"] == "EPSG:3413"
        assert props["proj:shape"] == list(tile.shape)
        assert props["proj:transform"][:6] == list(tile.transform)[:6]
        assert props["proj:bbox"] == list(tile.bounds)
        assert item.collection_id == tile.collection
        assert set(item.assets) >= {"dem", "datamask"}
        assert item.assets["dem"].href == catalog.asset_url(item.id, "dem")
        assert item.get_self_href().startswith(catalog.stac_url)
        lon0, lat0, lon1, lat1 = item.bbox
        assert 110 < lon0 < lon1 < 140 and 58 < lat0 < lat1 < 66


def test_pagination_through_the_gateway(fresh_log: LocalCatalog) -> None:
    client = Client.open(fresh_log.stac_url)
    search = client.search(collections=[collection_id(32)], limit=3, max_items=None)
    ids = [item.id for item in search.items()]
    assert sorted(ids) == sorted(fresh_log.spec.item_ids(32))
    searches = [r for r in fresh_log.requests("stac") if r["path"].startswith("/stac/search")]
    assert len(searches) == 7  # 20 items, 3 per page
    assert all(r["status"] == 200 for r in searches)
    assert fresh_log.requests("files") == []


def test_stac_root_without_trailing_slash(catalog: LocalCatalog) -> None:
    with http() as client:
        response = client.get(catalog.stac_url.rstrip("/"))
    assert response.status_code == 200
    links = {link["rel"]: link["href"] for link in response.json()["links"]}
    assert links["search"] == catalog.stac_url + "search"
    assert links["data"] == catalog.stac_url + "collections"


def test_range_request_returns_exact_bytes(fresh_log: LocalCatalog) -> None:
    item = "72_47_32m_v4.1"
    raw = fresh_log.asset_path(item).read_bytes()
    with http() as client:
        response = client.get(fresh_log.asset_url(item), headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == raw[1000:2000]
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(raw)}"
    (logged,) = fresh_log.requests("files")
    assert logged["range"] == "bytes=1000-1999" and logged["status"] == 206 and logged["bytes"] == 1000
    assert logged["method"] == "GET" and logged["path"].endswith(f"{item}_dem.tif")


def test_vsicurl_window_read_uses_only_ranges(fresh_log: LocalCatalog) -> None:
    item = "73_48_1_1_2m_v4.1"
    tile = TileRef.parse(item)
    window = Window(100, 24_200, 700, 600)
    with rasterio.Env(**GDAL_HTTP_ENV), rasterio.open("/vsicurl/" + fresh_log.asset_url(item)) as ds:
        data = ds.read(1, window=window)
    x, y = pixel_centres(tile, window)
    dem, _ = fresh_log.expected_pixels(2, x, y, items={item})
    np.testing.assert_array_equal(np.where(data == -9999, np.nan, data), dem)
    logged = fresh_log.requests("files")
    gets = [r for r in logged if r["method"] == "GET"]
    assert gets and all(r["range"] and r["status"] == 206 for r in gets)
    assert {r["method"] for r in logged} <= {"GET", "HEAD"}
    size = fresh_log.asset_path(item).stat().st_size
    assert sum(r["bytes"] for r in logged) < size / 3
    assert fresh_log.requests("stac") == []


def test_static_item_json_and_tile_index(catalog: LocalCatalog) -> None:
    with http() as client:
        item = client.get(catalog.item_url("72_47_10m_v4.1")).json()
        index = client.get(catalog.tile_index_url)
    assert item["id"] == "72_47_10m_v4.1" and item["properties"]["proj:shape"] == [10020, 10020]
    assert index.status_code == 200 and index.content == catalog.tile_index_path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(index.content)) as zf:
        names = sorted(zf.namelist())
        frames = {n: gpd.read_parquet(io.BytesIO(zf.read(n))) for n in names}
    assert names == [f"ArcticDEM_Mosaic_Index_v4_1_{r}m.parquet" for r in (10, 2, 32)]
    frame = frames["ArcticDEM_Mosaic_Index_v4_1_32m.parquet"]
    assert frame.crs.to_epsg() == 3413
    assert {"dem_id", "tile", "supertile", "gsd", "epsg", "release_ver", "fileurl", "s3url"} <= set(frame.columns)
    row = frame.set_index("dem_id").loc["72_47_32m_v4.1"]
    assert row.geometry.bounds == TileRef.parse("72_47_32m_v4.1").bounds
    assert row.s3url == catalog.item_url("72_47_32m_v4.1")
    assert row.fileurl == catalog.asset_url("72_47_32m_v4.1")


def test_publish_held_back_item(built_catalog: BuildResult, spec: CatalogSpec) -> None:
    held = "72_48_2_1_2m_v4.1"
    bounds = around(SUPERTILE_CORNER, 5_000.0)
    with LocalCatalog(built_catalog.root, spec.with_held_back([held])) as cat:
        assert cat.build is not None and not cat.build.built
        assert cat.unpublished() == (held,)
        client = Client.open(cat.stac_url)

        def found() -> set[str]:
            search = client.search(collections=[collection_id(2)], intersects=lonlat(bounds), max_items=None)  # type: ignore[arg-type]
            return {i.id for i in search.items()}

        with http() as h:
            assert h.get(cat.item_url(held)).status_code == 404
            assert h.get(cat.asset_url(held), headers={"Range": "bytes=0-99"}).status_code == 206
        assert held not in found() and len(found()) == 3
        assert held not in index_ids(cat)

        cat.publish(held)
        assert held in found() and len(found()) == 4
        assert cat.unpublished() == ()
        with http() as h:
            assert h.get(cat.item_url(held)).json()["id"] == held
        assert held in index_ids(cat)
        # the oracle follows publication
        x, y = np.array([[SUPERTILE_CORNER[0] + 1_001.0]]), np.array([[SUPERTILE_CORNER[1] - 1_001.0]])
        assert cat.expected_pixels(2, x, y)[1][0, 0] == 1


def test_stop_leaves_no_processes(built_catalog: BuildResult, spec: CatalogSpec) -> None:
    cat = LocalCatalog(built_catalog.root, spec).start()
    pids = [cat._proc.pid, cat._rustac.pid]  # gateway, rustac  # type: ignore[union-attr]
    port, run_dir = cat.port, cat.log_path.parent
    cat.stop()
    cat.stop()  # idempotent
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not run_dir.exists()
    assert not cat.running
