"""AlphaEarth annual embeddings through the unmodified earthengine-api client against the local Earth Engine.

Every pixel of a multi-year, multi-chunk load is checked against the stand-in's formula (an independent evaluation
at the pixels' centres), masked pixels are NaN, each (chunk, year) costs the requests the 48 MiB limit needs, the
cube stores the int8 codes, and a second load asks Earth Engine nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import coverage, load_alphaearth
from darts_aux.api import load
from darts_aux.errors import OfflineError, SourceError, UnknownTimeStepError
from darts_aux.grid import ChunkGrid, PixelWindow, roi_window, window_bounds
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.earthengine.alphaearth import alphaearth_pixels, quantise
from darts_aux.manifest import Manifest
from darts_aux.products import ALPHAEARTH_BANDS, Product, alphaearth
from darts_aux.settings import reload_settings
from darts_aux.sources.gee import row_bands_for
from darts_aux.store import Cube, cube_paths

PRODUCT = alphaearth()
SMALL = replace(PRODUCT, fill_chunk=500, read_chunk=500)
"""The same cube with 500² px chunks, so that a test loads many (chunk, year) pairs in seconds."""
# A corner of the 500 px chunk grid near (600 km, 3150 km), far from the pole gap, and 2 × 2 chunks around it.
CORNER_X = PRODUCT.extent.x0 + 920 * 500 * 10.0
CORNER_Y = PRODUCT.extent.y0 - 190 * 500 * 10.0
REGION = GeoBox.from_bbox((CORNER_X - 1_500, CORNER_Y - 1_200, CORNER_X + 1_700, CORNER_Y + 900), "EPSG:3413",
                          resolution=10)


@pytest.fixture
def inline_earth_engine(use_earth_engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch) -> LocalEarthEngine:
    """The local Earth Engine, fills in-process (the 500² px variant is not a registered product)."""
    monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
    reload_settings()
    return use_earth_engine


def oracle(product: Product, window: PixelWindow, year: int) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in's values (bands last, as float32; NaN where masked) and its valid mask at the window's pixels."""
    left, _, _, top = window_bounds(product.extent, window)
    rows, cols = window.shape
    x = left + (np.arange(cols) + 0.5) * product.resolution
    y = top - (np.arange(rows) + 0.5) * product.resolution
    values, valid = alphaearth_pixels(year, x[None, :], y[:, None])
    expected = values.astype(np.float32)
    expected[~valid] = np.nan
    return expected, valid


def test_a_multi_year_multi_chunk_load_equals_the_formula_pixel_for_pixel(
        inline_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    window = roi_window(REGION, SMALL.extent)
    chunks = ChunkGrid(SMALL).chunks(window)
    assert len(chunks) == 4
    ds = load(SMALL, REGION, tmp_path, steps=[2024, 2019])
    assert ds.sizes == {"time": 2, "y": window.shape[0], "x": window.shape[1]}
    assert [str(t)[:10] for t in ds.time.values] == ["2019-01-01", "2024-01-01"]
    assert list(ds.data_vars) == list(ALPHAEARTH_BANDS) and all(ds[b].dtype == np.float32 for b in ALPHAEARTH_BANDS)
    masked_total = 0
    for index, year in enumerate((2019, 2024)):
        expected, valid = oracle(SMALL, window, year)
        got = np.stack([ds[band].values[index] for band in ALPHAEARTH_BANDS], axis=-1)
        np.testing.assert_array_equal(got, expected, err_msg=str(year))  # NaN where masked, equal elsewhere
        assert np.isnan(got[~valid]).all() and not np.isnan(got[valid]).any()
        norms = np.linalg.norm(got[valid].astype(np.float64), axis=-1)
        assert np.abs(norms - 1).max() < 0.07  # unit vectors up to the int8 quantisation
        masked_total += int((~valid).sum())
    assert masked_total > 0  # the region holds masked pixels (lakes), so the NaN check above is not empty
    assert not np.array_equal(ds.A00.values[0], ds.A00.values[1], equal_nan=True)  # the years differ

    # every (chunk, year) was fetched with the requests the limit needs, and is full in its year's manifest
    per_chunk = len(row_bands_for((SMALL.fill_chunk, SMALL.fill_chunk), [4] * 64 + [1]))
    assert per_chunk == 2
    assert len(inline_earth_engine.compute_requests()) == 2 * 4 * per_chunk
    for year in (2019, 2024):
        cube = SMALL.at(year)
        latest = Manifest(cube_paths(tmp_path, cube).manifest, ChunkGrid(cube)).latest()
        assert sorted(latest) == sorted(chunks) and {r.status for r in latest.values()} == {"full"}
        assert {r.items_applied for r in latest.values()} == {(f"{PRODUCT.collection}@{year}",)}

    # the cube stores int8 codes: exactly the source's codes
    arrays = Cube.open(tmp_path, SMALL.at(2019)).arrays()
    stored = arrays["A05"]
    assert stored.dtype == np.int8 and stored.fill_value == -128
    assert stored.attrs["quantisation"] == {"value": "sign(q) * (abs(q) / 127.5) ** 2", "divisor": 127.5, "power": 2,
                                            "nodata": -128}
    rows, cols = window.slices
    expected, valid = oracle(SMALL, window, 2019)
    codes = np.full(window.shape, -128, np.int8)
    codes[valid] = quantise(expected[..., 5][valid])
    np.testing.assert_array_equal(stored[rows, cols], codes)

    # a second load, also of one year alone, asks Earth Engine nothing
    inline_earth_engine.reset_log()
    again = load(SMALL, REGION, tmp_path, steps=[2019, 2024])
    single = load(SMALL, REGION, tmp_path, steps=2024)
    assert inline_earth_engine.compute_requests() == []
    np.testing.assert_array_equal(again.A63.values, ds.A63.values)
    np.testing.assert_array_equal(single.A63.values[0], ds.A63.values[1])
    lazy = load(SMALL, REGION, tmp_path, steps=[2019, 2024], persist=False)  # dask: codes decoded block by block
    assert lazy.A12.chunks is not None and lazy.A12.dtype == np.float32
    np.testing.assert_array_equal(lazy.A12.values, ds.A12.values)
    assert inline_earth_engine.compute_requests() == []


def test_only_the_missing_years_are_fetched_and_offline_years_never_fetched_fail(
        inline_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    load(SMALL, REGION, tmp_path, steps=2019)
    inline_earth_engine.reset_log()
    load(SMALL, REGION, tmp_path, steps=[2019, 2020])
    assert len(inline_earth_engine.compute_requests()) == 4 * 2  # 2020's four chunks, two requests each
    with pytest.raises(OfflineError, match="darts-aux fetch alphaearth --year 2021 --bbox") as offline_error:
        load(SMALL, REGION, tmp_path, steps=2021, offline=True)
    assert "download_alphaearth((" in str(offline_error.value) and "years=2021)" in str(offline_error.value)
    offline = load(SMALL, REGION, tmp_path, steps=[2019, 2020], offline=True)
    assert offline.sizes["time"] == 2
    with pytest.raises(UnknownTimeStepError, match="2016"):
        load(SMALL, REGION, tmp_path, steps=2016)


def test_requests_in_flight_never_exceed_the_setting_at_seven_per_chunk(
        inline_earth_engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DARTS_AUX_EE_MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("DARTS_AUX_DOWNLOAD_WORKERS", "4")
    reload_settings()
    inline_earth_engine.set_delay(0.1)
    inline_earth_engine.set_max_in_flight(3)  # the server answers 429 beyond 3 at once: none may appear
    load(SMALL, REGION, tmp_path, steps=2017)
    requests = inline_earth_engine.compute_requests()
    assert len(requests) == 4 * 2 and all(r["status"] == 200 for r in requests)
    assert inline_earth_engine.max_in_flight_seen() == 3


def test_a_real_size_chunk_takes_seven_requests_and_is_stored_all_or_nothing(
        inline_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    """One 1000² px chunk of the shipped declaration: seven computePixels, throttling retried; a rejected request
    keeps the whole chunk out of the cube."""
    chunk_box = GeoBox.from_bbox((CORNER_X + 20, CORNER_Y - 980, CORNER_X + 980, CORNER_Y - 20), "EPSG:3413",
                                 resolution=10)
    window = roi_window(chunk_box, PRODUCT.extent)
    assert len(ChunkGrid(PRODUCT).chunks(window)) == 1
    inline_earth_engine.set_faults([400])  # one of the seven requests is rejected: none of the chunk may land
    with pytest.raises(SourceError, match="HTTP 400"):
        load_alphaearth(chunk_box, tmp_path, years=2025)
    assert Manifest(cube_paths(tmp_path, PRODUCT.at(2025)).manifest, ChunkGrid(PRODUCT)).latest() == {}
    inline_earth_engine.set_faults([429, 503, 429])
    inline_earth_engine.reset_log()
    ds = load_alphaearth(chunk_box, tmp_path, years=2025)
    statuses = sorted(r["status"] for r in inline_earth_engine.compute_requests())
    assert statuses == [200] * 7 + [429, 429, 503]
    expected, _ = oracle(PRODUCT, window, 2025)
    np.testing.assert_array_equal(np.stack([ds[b].values[0] for b in ALPHAEARTH_BANDS], axis=-1), expected)
    frame = coverage(tmp_path, "alphaearth-10m")
    assert list(zip(frame.step, frame.status)) == [("2025", "full")]


def test_verify_and_rebuild_work_per_year(inline_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    """Each year's cube is verified on its own, and its manifest is rebuilt from its own store's history."""
    import shutil

    from darts_aux.cubes import rebuild_all
    from darts_aux.verify import verify_all

    chunk_box = GeoBox.from_bbox((CORNER_X + 20, CORNER_Y - 980, CORNER_X + 980, CORNER_Y - 20), "EPSG:3413",
                                 resolution=10)
    first = load_alphaearth(chunk_box, tmp_path, years=[2018, 2022])
    verdicts = verify_all(tmp_path)
    assert [(v.product.key, v.checked, v.ok) for v in verdicts] == [
        ("alphaearth-10m@2018", 1, True), ("alphaearth-10m@2022", 1, True)]
    before = {year: Manifest(cube_paths(tmp_path, PRODUCT.at(year)).manifest, ChunkGrid(PRODUCT)).latest()
              for year in (2018, 2022)}
    shutil.rmtree(cube_paths(tmp_path, PRODUCT.at(2022)).manifest)  # 2022's manifest lost: the store still has it
    assert sorted(rebuild_all(tmp_path)) == [("alphaearth-10m@2018", 1), ("alphaearth-10m@2022", 1)]
    for year in (2018, 2022):
        after = Manifest(cube_paths(tmp_path, PRODUCT.at(year)).manifest, ChunkGrid(PRODUCT)).latest()
        assert {c: (r.status, r.items_applied, r.snapshot_id) for c, r in after.items()} == {
            c: (r.status, r.items_applied, r.snapshot_id) for c, r in before[year].items()}
    inline_earth_engine.reset_log()
    again = load_alphaearth(chunk_box, tmp_path, years=[2018, 2022], offline=True)
    np.testing.assert_array_equal(again.A31.values, first.A31.values)
    assert inline_earth_engine.compute_requests() == []


def test_download_alphaearth_prefetches_the_chunks_under_an_aoi_per_year(
        inline_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from darts_aux import download_alphaearth

    scenes = gpd.GeoDataFrame(geometry=[box(CORNER_X + 100, CORNER_Y - 900, CORNER_X + 400, CORNER_Y - 600)],
                              crs="EPSG:3413")  # inside one 1000² px chunk of the shipped grid
    report = download_alphaearth(scenes, tmp_path, years=[2020, 2021])
    assert (report.product, report.chunks, report.chunks_fetched, report.failures) == ("alphaearth-10m", 2, 2, ())
    assert len(inline_earth_engine.compute_requests()) == 2 * 7
    inline_earth_engine.reset_log()
    again = download_alphaearth(scenes, tmp_path, years=[2020, 2021])
    assert (again.chunks, again.chunks_fetched, again.chunks_already_full) == (2, 0, 2)
    assert inline_earth_engine.compute_requests() == []
