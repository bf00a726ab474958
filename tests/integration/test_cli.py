"""The `darts-aux` command line end to end: in-process (typer's CliRunner) and as a real subprocess.

Every file the CLI writes is checked against the oracles: the terrain formula of the local catalog, the
local Earth Engine's TCVIS formula, and the cube grid's CRS and transform.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux.claims import CLAIMS_DIR, ChunkClaims
from darts_aux.cli import app
from darts_aux.cli_support import coverage_map_path
from darts_aux.grid import ChunkGrid, PixelWindow, roi_window, window_bounds, window_geobox
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine, tcvis_pixels
from darts_aux.local.earthengine.alphaearth import alphaearth_pixels
from darts_aux.manifest import Manifest
from darts_aux.products import (
    ALPHAEARTH_BANDS,
    DEFAULT_TCVIS_EDITION,
    TCVIS_PIXEL,
    Product,
    alphaearth,
    arcticdem,
    tcvis,
)
from darts_aux.store import cube_paths

from .conftest import formula_oracle

ARCTICDEM_32 = arcticdem(32)
# 32 m chunks are 32 km across: chunk column 145 spans x 639,904 … 671,904 m, chunk row 29 y 3,140,096 …
# 3,172,096 m and row 30 the 32 km south of it. Both boxes below hold some of the catalog's nodata holes.
# Across the chunk border x = 639,904 m: chunks r0030c0144 and r0030c0145, both inside the published tiles (full).
# 30 km wide, it would fit in one chunk column were it aligned with the grid.
BBOX_2_CHUNKS = (635_000, 3_112_000, 665_000, 3_138_000)
# Inside chunk r0029c0145 only (north of BBOX_2_CHUNKS' east chunk).
BBOX_1_CHUNK = (645_000, 3_145_000, 670_000, 3_170_000)
TCVIS = tcvis()
_CORNER_LON = TCVIS.extent.x0 + 125 * TCVIS.fill_chunk * TCVIS_PIXEL
_CORNER_LAT = TCVIS.extent.y0 - 18 * TCVIS.fill_chunk * TCVIS_PIXEL
# Northern Alaska, inside TCVIS chunk r0018c0125 (about 740 × 370 px).
BBOX_TCVIS = (_CORNER_LON + 0.1, _CORNER_LAT - 0.25, _CORNER_LON + 0.3, _CORNER_LAT - 0.15)
# AlphaEarth: 200 × 200 px inside the 10 m chunk r0095c0460 (x 599,900 … 609,900 m, y 3,140,100 … 3,150,100 m).
ALPHAEARTH = alphaearth()
BBOX_ALPHAEARTH = (600_500, 3_146_000, 602_500, 3_148_000)

runner = CliRunner()


def _bbox_args(bbox: tuple[float, ...]) -> list[str]:
    return ["--bbox", *(repr(float(v)) for v in bbox)]


def _window(product: Product, bbox: tuple[float, ...], crs: str) -> PixelWindow:
    return roi_window(GeoBox.from_bbox(bbox, crs, resolution=product.resolution), product.extent)


def _invoke(*args: str) -> object:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the rich table row whose first cell is `first_cell`."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{output}")


def _manifest_chunks(data_dir: Path, product: Product) -> dict:
    return Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product)).latest()


def _assert_dem_geotiff(path: Path, catalog: LocalCatalog, window: PixelWindow) -> None:
    """The GeoTIFF holds the cube window exactly: formula pixels, EPSG:3413, the window's transform."""
    dem, mask = formula_oracle(catalog, 32, window)
    with rasterio.open(path) as src:
        assert src.count == 2 and src.descriptions == ("dem", "datamask")
        assert src.dtypes == ("float32", "float32") and np.isnan(src.nodata)
        assert src.crs.to_epsg() == 3413
        assert src.transform == window_geobox(ARCTICDEM_32.extent, window).affine
        assert (src.height, src.width) == window.shape
        assert src.tags(2)["source_dtype"] == "uint8" and src.tags()["product"] == "arcticdem-32m"
        np.testing.assert_array_equal(src.read(1), dem)
        np.testing.assert_array_equal(src.read(2), mask.astype("float32"))
    assert np.isnan(dem).any() and np.isfinite(dem).mean() > 0.5, "the window has data and holes"


def _assert_coverage_png(path: Path) -> None:
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 10, "a map, not a blank canvas"


# -- in-process (CliRunner) ----------------------------------------------------------------------


def test_fetch_twice_status_map_and_load_in_process(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    window = _window(ARCTICDEM_32, BBOX_2_CHUNKS, "EPSG:3413")
    chunks = ChunkGrid(ARCTICDEM_32).chunks(window)
    assert len(chunks) == 2

    first = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--resolution", "32", "--data-dir", str(data_dir))
    cube, total, fetched, reused, rechecked, by_others, megabytes, _ = _table_row(first.stdout, "arcticdem-32m")
    assert (total, fetched, reused, rechecked, by_others) == ("2", "2", "0", "0", "0")
    assert float(megabytes.replace(",", "")) > 0
    rows = _manifest_chunks(data_dir, ARCTICDEM_32)
    assert set(rows) == set(chunks) and all(r.status == "full" for r in rows.values())
    assert use_catalog.requests("files"), "the first fetch reads tiles"
    assert "2/2" in first.stderr, "the progress bar reached every chunk"

    use_catalog.reset_log()
    again = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--data-dir", str(data_dir))  # 32 m by default
    assert _table_row(again.stdout, "arcticdem-32m")[1:5] == ["2", "0", "2", "0"]
    assert use_catalog.requests() == [], "a settled region sends nothing to the catalog"
    assert _manifest_chunks(data_dir, ARCTICDEM_32) == rows

    out = tmp_path / "maps" / "coverage.png"
    status = _invoke("status", "--data-dir", str(data_dir), "--map", str(out))
    assert _table_row(status.stdout, "arcticdem-32m")[1:4] == ["2", "0", "0"]
    with ChunkClaims(cube_paths(data_dir, ARCTICDEM_32).root / CLAIMS_DIR) as running_fill:
        assert running_fill.claim(chunks[0]) is None
        busy = _invoke("status", "--data-dir", str(data_dir))
    assert _table_row(busy.stdout, "arcticdem-32m")[3].startswith("1 ("), "a chunk another fill is downloading"
    picture = coverage_map_path(out, ARCTICDEM_32)
    assert picture == tmp_path / "maps" / "coverage-arcticdem-32m.png"
    _assert_coverage_png(picture)
    assert sorted(p.name for p in out.parent.iterdir()) == [picture.name]

    tif = tmp_path / "roi.tif"
    loaded = _invoke("load", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--out", str(tif), "--data-dir", str(data_dir))
    assert "EPSG:3413" in loaded.stdout
    assert use_catalog.requests() == [], "the load is served from the cube"
    _assert_dem_geotiff(tif, use_catalog, window)


def test_load_tcvis_geotiff_in_process(use_earth_engine: LocalEarthEngine, inline: None, tmp_path: Path) -> None:
    window = _window(TCVIS, BBOX_TCVIS, "EPSG:4326")
    assert len(ChunkGrid(TCVIS).chunks(window)) == 1
    tif = tmp_path / "tcvis.tif"
    _invoke("load", "tcvis", *_bbox_args(BBOX_TCVIS), "--out", str(tif))  # default CRS EPSG:4326, default data dir

    left, _, _, top = window_bounds(TCVIS.extent, window)
    rows, cols = window.shape
    lon = left + (np.arange(cols) + 0.5) * TCVIS_PIXEL
    lat = top - (np.arange(rows) + 0.5) * TCVIS_PIXEL
    expected = tcvis_pixels(DEFAULT_TCVIS_EDITION, lon[None, :], lat[:, None])
    with rasterio.open(tif) as src:
        assert src.descriptions == ("tc_brightness", "tc_greenness", "tc_wetness", "valid")
        assert set(src.dtypes) == {"uint8"} and src.nodata is None
        assert src.crs.to_epsg() == 4326
        assert src.transform.almost_equals(window_geobox(TCVIS.extent, window).affine, precision=1e-12)
        for band, source in enumerate(("TCB_slope", "TCG_slope", "TCW_slope", "valid"), start=1):
            np.testing.assert_array_equal(src.read(band), expected[source], err_msg=source)
    assert 0 < expected["valid"].mean() < 1, "masked and valid pixels both present"
    assert len(use_earth_engine.compute_requests()) >= 1
    assert set(_manifest_chunks(tmp_path / "data", TCVIS)) == set(ChunkGrid(TCVIS).chunks(window))

    status = _invoke("status", "--map", str(tmp_path / "map.png"))  # TCVIS cubes are listed and mapped too
    assert _table_row(status.stdout, TCVIS.key)[1:3] == ["1", "0"]
    _assert_coverage_png(tmp_path / f"map-{TCVIS.key}.png")


def test_load_one_alphaearth_year_as_geotiff_then_fetch_and_status_per_year(
        use_earth_engine: LocalEarthEngine, inline: None, tmp_path: Path) -> None:
    window = _window(ALPHAEARTH, BBOX_ALPHAEARTH, "EPSG:3413")
    assert len(ChunkGrid(ALPHAEARTH).chunks(window)) == 1
    tif = tmp_path / "alphaearth.tif"
    _invoke("load", "alphaearth", *_bbox_args(BBOX_ALPHAEARTH), "--year", "2020", "--out", str(tif))

    left, _, _, top = window_bounds(ALPHAEARTH.extent, window)
    rows, cols = window.shape
    x = left + (np.arange(cols) + 0.5) * 10.0
    y = top - (np.arange(rows) + 0.5) * 10.0
    values, valid = alphaearth_pixels(2020, x[None, :], y[:, None])
    expected = values.astype("float32")
    expected[~valid] = np.nan
    with rasterio.open(tif) as src:
        assert src.descriptions == ALPHAEARTH_BANDS and set(src.dtypes) == {"float32"} and np.isnan(src.nodata)
        assert src.crs.to_epsg() == 3413 and src.tags()["time"] == "2020-01-01"
        assert src.transform == window_geobox(ALPHAEARTH.extent, window).affine
        for band in (1, 17, 64):
            np.testing.assert_array_equal(src.read(band), expected[..., band - 1], err_msg=str(band))
    assert len(use_earth_engine.compute_requests()) == 7  # one chunk of one year: seven requests within the limit

    use_earth_engine.reset_log()
    _invoke("fetch", "alphaearth", *_bbox_args(BBOX_ALPHAEARTH), "--year", "2020", "--year", "2021")
    assert len(use_earth_engine.compute_requests()) == 7  # 2020 is in the cube: only 2021's chunk was fetched
    status = _invoke("status")
    assert _table_row(status.stdout, "alphaearth-10m@2020")[1:3] == ["1", "0"]
    assert _table_row(status.stdout, "alphaearth-10m@2021")[1:3] == ["1", "0"]


def test_a_source_failing_inside_the_fill_is_one_red_line(inline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from darts_aux.settings import reload_settings

    monkeypatch.setenv("DARTS_AUX_STAC_URL", "http://127.0.0.1:9/stac/")  # nothing listens on the discard port
    monkeypatch.setenv("DARTS_AUX_RETRIES", "1")
    reload_settings()
    result = runner.invoke(app, ["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the tile catalog at http://127.0.0.1:9/stac/") and "DARTS_AUX_STAC_URL" in last


def test_load_netcdf_in_process(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    import xarray as xr

    out = tmp_path / "roi.nc"
    _invoke("load", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--out", str(out))
    window = _window(ARCTICDEM_32, BBOX_1_CHUNK, "EPSG:3413")
    dem, mask = formula_oracle(use_catalog, 32, window)
    with xr.open_dataset(out) as ds:
        np.testing.assert_array_equal(ds.dem.values, dem)
        np.testing.assert_array_equal(ds.datamask.values, mask)
        assert ds.datamask.dtype == np.uint8
        assert (ds.odc.geobox.crs.epsg == 3413
                and ds.odc.geobox.affine == window_geobox(ARCTICDEM_32.extent, window).affine)


# -- as a subprocess -----------------------------------------------------------------------------


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "darts_aux.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_load_fetch_status_as_a_subprocess(use_catalog: LocalCatalog, tmp_path: Path) -> None:
    data_dir = tmp_path / "sub"
    env = {**os.environ, "DARTS_AUX_ORCHESTRATOR": "inline", "DARTS_AUX_DATA_DIR": str(data_dir)}
    left, bottom, right, top = BBOX_1_CHUNK
    roi = tmp_path / "roi.geojson"
    roi.write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3413"}},
        "features": [{"type": "Feature", "properties": {}, "geometry": {
            "type": "Polygon",
            "coordinates": [[[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]]}}],
    }))
    window = _window(ARCTICDEM_32, BBOX_1_CHUNK, "EPSG:3413")
    chunks = ChunkGrid(ARCTICDEM_32).chunks(window)
    assert len(chunks) == 1

    tif = tmp_path / "out" / "roi.tif"
    loaded = _ok(_run(env, "load", "arcticdem", "--geojson", str(roi), "--out", str(tif)))
    assert "1/1" in loaded.stderr and _table_row(loaded.stdout, "arcticdem-32m")[1:3] == ["1", "1"]
    _assert_dem_geotiff(tif, use_catalog, window)
    assert set(_manifest_chunks(data_dir, ARCTICDEM_32)) == set(chunks)

    use_catalog.reset_log()
    fetched = _ok(_run(env, "fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK)))
    assert _table_row(fetched.stdout, "arcticdem-32m")[1:5] == ["1", "0", "1", "0"]
    assert use_catalog.requests() == []
    assert set(_manifest_chunks(data_dir, ARCTICDEM_32)) == set(chunks)

    out = tmp_path / "coverage.png"
    status = _ok(_run(env, "status", "--map", str(out)))
    assert _table_row(status.stdout, "arcticdem-32m")[1] in ("1", "0") and str(data_dir) in status.stdout
    _assert_coverage_png(coverage_map_path(out, ARCTICDEM_32))


def test_fetch_as_a_subprocess_fills_exactly_the_roi_chunks(use_catalog: LocalCatalog, tmp_path: Path) -> None:
    env = {**os.environ, "DARTS_AUX_ORCHESTRATOR": "inline"}
    data_dir = tmp_path / "fetch"
    result = _ok(_run(env, "fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--buffer", "3",
                      "--data-dir", str(data_dir)))
    window = roi_window(GeoBox.from_bbox(BBOX_1_CHUNK, "EPSG:3413", resolution=32), ARCTICDEM_32.extent, 3)
    assert set(_manifest_chunks(data_dir, ARCTICDEM_32)) == set(ChunkGrid(ARCTICDEM_32).chunks(window))
    assert _table_row(result.stdout, "arcticdem-32m")[1:3] == ["1", "1"]
    use_catalog.reset_log()
    _ok(_run(env, "fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--data-dir", str(data_dir)))
    assert use_catalog.requests() == []


def test_bad_input_in_a_subprocess_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "DARTS_AUX_DATA_DIR": str(tmp_path / "data")}
    result = _run(env, "fetch", "arcticdem", "--bbox", "700000", "3100000", "600000", "3200000")
    assert result.returncode == 1 and result.stdout == ""
    assert "MINX < MAXX" in _one_error_line(result.stderr)
    result = _run(env, "load", "dem", "--bbox", "0", "0", "1", "1", "--out", "x.tif")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "'dem' is not one of" in result.stderr
    assert not (tmp_path / "data").exists()


# -- bad input, help, serve (in-process) ---------------------------------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def _geojson(tmp_path: Path, text: str) -> str:
    path = tmp_path / "roi.geojson"
    path.write_text(text)
    return str(path)


BAD_INPUT = {
    "resolution 5": (["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--resolution", "5"], "no 5 m product"),
    "bbox min > max": (["fetch", "arcticdem", "--bbox", "690000", "3150000", "650000", "3170000"], "MINX < MAXX"),
    "bbox ymin > ymax": (["load", "arcticdem", "--bbox", "650000", "3170000", "690000", "3150000", "--out", "x.tif"],
                         "MINY < MAXY"),
    "missing GeoJSON": (["fetch", "arcticdem", "--geojson", "/nonexistent/roi.geojson"], "cannot read the GeoJSON"),
    "GeoJSON not JSON": (["fetch", "tcvis", "--geojson", "{tmp}/roi.geojson"], "not valid JSON"),
    "no region": (["fetch", "arcticdem"], "either as --bbox"),
    "bbox and GeoJSON": (["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--geojson", "x.json"], "one of them"),
    "tcvis resolution": (["fetch", "tcvis", "--bbox", "120", "60", "121", "61", "--resolution", "10"],
                         "drop --resolution"),
    "unknown CRS": (["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--crs", "EPSG:999999"], "unknown CRS"),
    "alphaearth year": (["fetch", "alphaearth", *_bbox_args(BBOX_ALPHAEARTH), "--year", "2016"],
                        "no time step 2016"),
    "year of arcticdem": (["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--year", "2019"], "drop --year"),
    "alphaearth resolution": (["fetch", "alphaearth", *_bbox_args(BBOX_ALPHAEARTH), "--resolution", "30"],
                              "drop --resolution"),
    "two years in a GeoTIFF": (["load", "alphaearth", *_bbox_args(BBOX_ALPHAEARTH), "--year", "2019", "--year",
                                "2020", "--out", "{tmp}/x.tif"], "a GeoTIFF holds one year"),
    "outside the extent": (["fetch", "arcticdem", "--bbox", "-170", "-60", "-160", "-50", "--crs", "EPSG:4326"],
                           "outside the cube extent"),
    "negative buffer": (["fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--buffer", "-1"], "buffer=-1"),
    "output suffix": (["load", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--out", "roi.png"], "must end in .nc"),
    "map suffix": (["status", "--map", "{tmp}/map.jpg"], "must end in .png"),
    "status, no data dir": (["status", "--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere does not exist"),
    "status, default data dir missing": (["status"], "DARTS_AUX_DATA_DIR={tmp}/data does not exist"),
    "status --map, no data dir": (["status", "--map", "{tmp}/map.png"], "DARTS_AUX_DATA_DIR={tmp}/data does not"),
    "verify, no data dir": (["verify", "--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere does not exist"),
    "compact, no data dir": (["manifest", "compact", "--data-dir", "{tmp}/x"], "--data-dir {tmp}/x does not exist"),
    "rebuild, no data dir": (["manifest", "rebuild", "--data-dir", "{tmp}/x"], "--data-dir {tmp}/x does not exist"),
    "status, no cube": (["status", "--data-dir", "{tmp}"], "--data-dir {tmp} holds no darts-aux cube"),
    "verify, no cube": (["verify", "--data-dir", "{tmp}"], "--data-dir {tmp} holds no darts-aux cube"),
    "compact, no cube": (["manifest", "compact", "--data-dir", "{tmp}"], "--data-dir {tmp} holds no darts-aux cube"),
    "data dir is a file": (["verify", "--data-dir", "{tmp}/roi.geojson"], "--data-dir {tmp}/roi.geojson is a file"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_red_line_and_exit_1(case: str, tmp_path: Path) -> None:
    args, message = BAD_INPUT[case]
    _geojson(tmp_path, "{not json")
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in line, line
    assert result.stdout.strip() == ""
    assert not (tmp_path / "data").exists(), "bad input writes nothing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roi.geojson"], "nothing is created"


@pytest.mark.parametrize("args", [
    ["fetch", "dem", "--bbox", "0", "0", "1", "1"],
    ["fetch", "arcticdem", "--bbox", "1", "2"],
    ["load", "arcticdem", "--bbox", "0", "0", "1", "1"],
    ["fetch", "arcticdem", "--resolution", "x"],
], ids=["unknown product", "three numbers short", "load without --out", "resolution not a number"])
def test_usage_errors_exit_2_without_traceback(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", [[], ["fetch"], ["load"], ["status"], ["serve"], ["demo"], ["manifest"],
                                     ["manifest", "compact"]], ids=lambda c: " ".join(c) or "darts-aux")
def test_help_everywhere(command: list[str]) -> None:
    result = _invoke(*command, "--help")
    assert "Usage" in result.stdout


def test_serve_starts_the_deployments_with_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str | None] = []
    fake = types.ModuleType("darts_aux.flows.deployments")
    fake.serve_all = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "darts_aux.flows.deployments", fake)
    _invoke("serve", "--data-dir", str(tmp_path / "cubes"))
    _invoke("serve")
    assert calls == [str(tmp_path / "cubes"), None]


def test_serve_without_deployments_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "darts_aux.flows.deployments", None)  # the import fails
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "cannot serve the deployments: darts_aux.flows.deployments does not import" in _one_error_line(result.stderr)
