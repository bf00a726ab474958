"""Flaky sources: a fault proxy (5xx, resets, stalls past the timeout, cut-short bodies) in front of the STAC API,
the COG file server and the local Earth Engine. Loads still come back exact, with a bounded number of retries;
a source that stays down leaves ArcticDEM chunks partial and TCVIS chunks uncommitted, and raises a typed error.

Retry accounting (R = DARTS_AUX_RETRIES), from the proxies' own logs against a fault-free run through a proxy:
- STAC: each request of a search is retried on its own, so at most (R + 1) × the requests needed;
- COG files: GDAL retries each range request R times, an item read is retried R times as a whole, and GDAL
  re-reads a failed merged multi-range fetch one range at a time: at most 2 (R + 1)² × the requests needed;
- Earth Engine: each computePixels (and the initialisation) is retried R times, and a chunk whose download
  still failed is retried R times: at most (R + 1)² × the requests needed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem, load_tcvis
from darts_aux.cubes import commit_rows
from darts_aux.errors import DartsAuxError, SourceError, SourceUnavailableError
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.faults import FAULT_KINDS, FaultProxy
from darts_aux.manifest import Manifest
from darts_aux.products import TCVIS_PIXEL, Product, arcticdem, tcvis
from darts_aux.settings import reload_settings
from darts_aux.store import Cube, cube_paths

from .conftest import formula_oracle, published_tiles, rasterio_mosaic
from .test_tcvis import oracle as tcvis_oracle

RETRIES = 3
TIMEOUT = {"arcticdem": 1, "earthengine": 4}
"""Seconds; a local Earth Engine answer takes ~0.7 s to compute on two busy cores, several on overloaded ones."""
PROBABILITY = 0.3
# 32 m: across the chunk borders x = 639,904 m and y = 3,172,096 m (4 chunks of 32 km, over supertiles 72_47, 73_47).
ROI_32M = GeoBox.from_bbox((620_000, 3_145_000, 660_000, 3_175_000), "EPSG:3413", resolution=32)
# 2 m: around the subtile corner at (700 km, 3,200 km), across 2 m chunk borders (4 × 4 chunks of 2 km, 4 subtiles).
ROI_2M = GeoBox.from_bbox((698_000, 3_195_500, 704_500, 3_201_000), "EPSG:3413", resolution=2)
# TCVIS: inside one chunk in northern Alaska (4 computePixels requests).
TCVIS_PRODUCT = tcvis()
_LON = TCVIS_PRODUCT.extent.x0 + 125 * TCVIS_PRODUCT.fill_chunk * TCVIS_PIXEL
_LAT = TCVIS_PRODUCT.extent.y0 - 18 * TCVIS_PRODUCT.fill_chunk * TCVIS_PIXEL
ROI_TCVIS = GeoBox.from_bbox((_LON + 0.1, _LAT - 0.3, _LON + 0.4, _LAT - 0.1), "EPSG:4326", resolution=TCVIS_PIXEL)


def _settings(monkeypatch: pytest.MonkeyPatch, source: str, retries: int = RETRIES) -> None:
    """Small retry delays and timeouts, fills in-process."""
    for key, value in {"RETRIES": retries, "RETRY_DELAY_SECONDS": 0.05, "HTTP_TIMEOUT_SECONDS": TIMEOUT[source],
                       "ORCHESTRATOR": "inline"}.items():
        monkeypatch.setenv(f"DARTS_AUX_{key}", str(value))
    reload_settings()


def _through(proxy: FaultProxy, catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the STAC URL at the catalog behind `proxy` (item hrefs then lead through it too)."""
    monkeypatch.setenv("DARTS_AUX_STAC_URL", proxy.via(catalog.stac_url))
    reload_settings()


def _ee_through(proxy: FaultProxy, engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the Earth Engine settings at the local Earth Engine behind `proxy`."""
    monkeypatch.setenv("DARTS_AUX_EE_URL", proxy.url)
    monkeypatch.setenv("DARTS_AUX_EE_PROJECT", engine.project)
    monkeypatch.setenv("DARTS_AUX_EE_CREDENTIALS", "anonymous")
    reload_settings()


def _kind(record: dict) -> str:
    return "files" if record["path"].startswith("/files/") else "stac"


def _report(label: str, needed: Counter[str], proxy: FaultProxy, seconds: float) -> Counter[str]:
    """Requests per upstream in the flaky run; printed with the faults and retries (pytest -s shows it)."""
    seen = Counter(_kind(r) for r in proxy.requests())
    print(f"\n{label}: needed {dict(needed)}, sent {dict(seen)}, faults {dict(proxy.fault_counts())}, "
          f"extra requests {sum(seen.values()) - sum(needed.values())}, {seconds:.1f} s")
    return seen


# Seeds whose first draws are faults: the STAC requests come first, one at a time, so they meet them; the
# draws a fault-free load needs already hold every kind of fault.
@pytest.mark.parametrize(("resolution", "roi", "seed"), [(32, ROI_32M, 8), (2, ROI_2M, 39)], ids=["32m", "2m"])
def test_arcticdem_is_exact_through_flaky_stac_and_file_servers(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resolution: int, roi: GeoBox, seed: int,
) -> None:
    _settings(monkeypatch, "arcticdem")
    product = arcticdem(resolution)
    window = roi_window(roi, product.extent)
    with FaultProxy(catalog.base_url) as clean:  # the requests a fault-free load needs
        _through(clean, catalog, monkeypatch)
        load_arcticdem(roi, tmp_path / "clean", resolution)
        needed = Counter(_kind(r) for r in clean.requests())
    stall = TIMEOUT["arcticdem"] + 1
    with FaultProxy(catalog.base_url, PROBABILITY, FAULT_KINDS, seed=seed, stall_seconds=stall) as proxy:
        _through(proxy, catalog, monkeypatch)
        started = time.perf_counter()
        ds = load_arcticdem(roi, tmp_path / "flaky", resolution)
        sent = _report(f"arcticdem {resolution} m", needed, proxy, time.perf_counter() - started)
        faults = proxy.fault_counts()
        faults_by_upstream = Counter(_kind(r) for r in proxy.requests() if r["fault"] != "none")

    oracle = rasterio_mosaic(catalog, resolution, window)
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])
    dem, mask = formula_oracle(catalog, resolution, window)
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)
    rows = _manifest(tmp_path / "flaky", product).latest(window)
    assert all(not r.items_failed for r in rows.values()), "every failed read was retried until it succeeded"

    assert faults_by_upstream["stac"] > 0 and faults_by_upstream["files"] > 0, "faults reached both servers"
    assert set(faults) == set(FAULT_KINDS), f"every kind of fault was injected: {dict(faults)}"
    assert sent["files"] > needed["files"] and sent["stac"] > needed["stac"], "failed requests were retried"
    assert sent["stac"] <= (RETRIES + 1) * needed["stac"]
    assert sent["files"] <= 2 * (RETRIES + 1) ** 2 * needed["files"]


def test_tcvis_is_exact_through_a_flaky_earth_engine(
    earth_engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    _settings(monkeypatch, "earthengine")
    earth_engine.clear_faults()
    window = roi_window(ROI_TCVIS, TCVIS_PRODUCT.extent)
    assert len(ChunkGrid(TCVIS_PRODUCT).chunks(window)) == 1
    with FaultProxy(earth_engine.url) as clean:
        _ee_through(clean, earth_engine, monkeypatch)
        load_tcvis(ROI_TCVIS, tmp_path / "clean")
        needed = Counter({"compute": len(clean.requests(path_contains=":computePixels")),
                          "other": len(clean.requests()) - len(clean.requests(path_contains=":computePixels"))})
    stall = TIMEOUT["earthengine"] + 1
    # seed 42: the first 9 draws hold every kind of fault (4 of the first 7 requests fail, so 9 are drawn at least)
    with FaultProxy(earth_engine.url, PROBABILITY, FAULT_KINDS, seed=42, stall_seconds=stall) as proxy:
        _ee_through(proxy, earth_engine, monkeypatch)
        started = time.perf_counter()
        ds = load_tcvis(ROI_TCVIS, tmp_path / "flaky")
        seconds = time.perf_counter() - started
        compute = proxy.requests(path_contains=":computePixels")
        faults = proxy.fault_counts()
        total = len(proxy.requests())
    print(f"\ntcvis: needed {dict(needed)}, sent {total} ({len(compute)} computePixels), faults {dict(faults)}, "
          f"extra requests {total - sum(needed.values())}, {seconds:.1f} s")

    expected = tcvis_oracle(TCVIS_PRODUCT, window)
    for name in ("tc_brightness", "tc_greenness", "tc_wetness", "valid"):
        np.testing.assert_array_equal(ds[name].values, expected[name], err_msg=name)
    assert set(faults) == set(FAULT_KINDS), f"every kind of fault was injected: {dict(faults)}"
    assert any(r["fault"] != "none" for r in compute), "computePixels requests met faults"
    assert total > sum(needed.values()), "failed requests were retried"
    assert total <= (RETRIES + 1) ** 2 * sum(needed.values())


def test_file_server_that_stays_down_leaves_chunks_partial_and_raises(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    _settings(monkeypatch, "arcticdem", retries=1)
    product, grid = arcticdem(32), ChunkGrid(arcticdem(32))
    window = roi_window(ROI_32M, product.extent)
    items = {t.item_id for chunk in grid.chunks(window) for t in published_tiles(catalog, 32, grid.window(chunk))}
    with FaultProxy(catalog.base_url) as proxy:
        _through(proxy, catalog, monkeypatch)
        proxy.down(path_prefix="/files/")  # the STAC API still answers: discovery works, every tile read fails
        with caplog.at_level(logging.WARNING), pytest.raises(SourceUnavailableError) as raised:
            load_arcticdem(ROI_32M, tmp_path, 32)
        stac_ok = [r for r in proxy.requests(path_contains="/stac") if r["status"] == 200]
        file_faults = proxy.requests(path_contains="/files/")

    assert stac_ok and file_faults and all(r["fault"] in ("5xx", "reset") for r in file_faults)
    error = raised.value
    assert isinstance(error, DartsAuxError) and error.source == "cog", "the error names the server that failed"
    assert "Run the same load again" in str(error) and any(item in str(error) for item in items)
    rows = _manifest(tmp_path, product).latest(window)
    assert sorted(rows) == sorted(grid.chunks(window))
    assert all(r.status == "partial" and r.items_failed and not r.items_applied for r in rows.values())
    assert all("TransientSourceError" in r.note for r in rows.values()), "the reasons are in the manifest too"
    assert set().union(*(r.items_failed for r in rows.values())) == items
    failures = [r for r in caplog.records if "failed after retries" in r.getMessage()]
    assert failures and all("TransientSourceError" in r.getMessage() for r in failures), "the reason is logged"


def test_an_item_whose_mask_cannot_be_read_leaves_none_of_its_elevations_behind(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The first item of a chunk is read straight into the chunk: when its second asset fails for good, the rows
    of its first asset already read must go again, so the chunk holds exactly the items recorded as applied."""
    _settings(monkeypatch, "arcticdem", retries=1)
    product, grid = arcticdem(32), ChunkGrid(arcticdem(32))
    window = roi_window(ROI_32M, product.extent)
    tiles = published_tiles(catalog, 32, window)
    broken = tiles[0]  # read first (items go in id order) into every chunk it covers
    with FaultProxy(catalog.base_url) as proxy:
        _through(proxy, catalog, monkeypatch)
        proxy.down(path_prefix=urlparse(catalog.asset_url(broken.item_id, "datamask")).path)
        with pytest.raises(SourceUnavailableError):
            load_arcticdem(ROI_32M, tmp_path, 32)
        dem_reads = proxy.requests(path_contains=urlparse(catalog.asset_url(broken.item_id, "dem")).path)

    assert dem_reads and all(r["fault"] == "none" for r in dem_reads), "the item's dem was read before its mask failed"
    rows = _manifest(tmp_path, product).latest(window)
    touched = [chunk for chunk in grid.chunks(window) if broken in published_tiles(catalog, 32, grid.window(chunk))]
    assert touched and all(broken.item_id in rows[c].items_failed for c in touched)
    cube = Cube.open(tmp_path, product)
    for chunk in touched:
        stored = cube.read(grid.window(chunk))
        others = [t for t in published_tiles(catalog, 32, grid.window(chunk)) if t != broken]
        assert sorted(rows[chunk].items_applied) == sorted(t.item_id for t in others)
        if others:
            oracle = rasterio_mosaic(catalog, 32, grid.window(chunk), others)
            np.testing.assert_array_equal(stored["dem"], oracle["dem"])
            np.testing.assert_array_equal(stored["datamask"], oracle["datamask"])
        else:
            assert np.isnan(stored["dem"]).all() and (stored["datamask"] == 0).all()


def test_earth_engine_that_stays_down_commits_nothing_and_raises(
    earth_engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    _settings(monkeypatch, "earthengine", retries=1)
    earth_engine.clear_faults()
    window = roi_window(ROI_TCVIS, TCVIS_PRODUCT.extent)
    with FaultProxy(earth_engine.url) as proxy:
        _ee_through(proxy, earth_engine, monkeypatch)
        proxy.down()
        with pytest.raises(SourceError) as raised:
            load_tcvis(ROI_TCVIS, tmp_path)
        attempts = len(proxy.requests())
    assert raised.value.source == "earthengine" and "try again later" in str(raised.value)
    assert 0 < attempts <= (1 + 1) ** 2, "retried, but boundedly"
    paths = cube_paths(tmp_path, TCVIS_PRODUCT)
    rows = Manifest(paths.manifest, ChunkGrid(TCVIS_PRODUCT)).latest(window)
    assert not any(r.status == "full" for r in rows.values())
    if paths.root.exists():
        assert not [row for s in Cube.open(tmp_path, TCVIS_PRODUCT).history() for row in commit_rows(s.metadata or {})]


def _manifest(data_dir: Path, product: Product) -> Manifest:
    return Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product))

