"""TCVIS through the unmodified earthengine-api client against the local Earth Engine: exact, retried, capped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_tcvis
from darts_aux.cubes import commit_rows, records_from_history
from darts_aux.errors import ConfigurationError, SourceRequestError, UnknownEditionError
from darts_aux.fill import FillContext, run_inline, tcvis_context
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_bounds
from darts_aux.local.earthengine import LocalEarthEngine, tcvis_pixels
from darts_aux.location import as_location
from darts_aux.manifest import Manifest
from darts_aux.products import DEFAULT_TCVIS_EDITION, TCVIS_EDITIONS, TCVIS_PIXEL, Product, tcvis
from darts_aux.settings import get_settings, reload_settings
from darts_aux.sources.gee import row_bands
from darts_aux.store import Cube, cube_paths

PRODUCT = tcvis()
GRID = ChunkGrid(PRODUCT)
BANDS = {"tc_brightness": "TCB_slope", "tc_greenness": "TCG_slope", "tc_wetness": "TCW_slope", "valid": "valid"}
# Around a chunk corner in northern Alaska (4 chunks: 1.35° × 1.35° each).
CORNER_LON = PRODUCT.extent.x0 + 125 * PRODUCT.fill_chunk * TCVIS_PIXEL
CORNER_LAT = PRODUCT.extent.y0 - 18 * PRODUCT.fill_chunk * TCVIS_PIXEL
ROI_4_CHUNKS = GeoBox.from_bbox((CORNER_LON - 0.1, CORNER_LAT - 0.05, CORNER_LON + 0.1, CORNER_LAT + 0.05),
                                "EPSG:4326", resolution=TCVIS_PIXEL)
ANTIMERIDIAN = GeoBox.from_bbox((179.5, 65.9, 180.5, 66.1), "EPSG:4326", resolution=TCVIS_PIXEL)


def oracle(product: Product, window: PixelWindow, edition: str = DEFAULT_TCVIS_EDITION) -> dict[str, np.ndarray]:
    """The server's formula at the window's pixel centres (longitudes past 180° wrap in the formula)."""
    left, _, _, top = window_bounds(product.extent, window)
    rows, cols = window.shape
    lon = left + (np.arange(cols) + 0.5) * TCVIS_PIXEL
    lat = top - (np.arange(rows) + 0.5) * TCVIS_PIXEL
    pixels = tcvis_pixels(edition, lon[None, :], lat[:, None])
    return {name: pixels[band] for name, band in BANDS.items()}


def _fetch(chunk: ChunkId) -> dict[str, np.ndarray]:
    return tcvis_context(DEFAULT_TCVIS_EDITION, "/unused", get_settings()).source().fetch(chunk, ()).arrays


@pytest.mark.parametrize("where", ["inner", "last-row", "last-column"])
def test_a_chunk_equals_the_formula_with_the_fewest_requests(use_earth_engine: LocalEarthEngine, where: str) -> None:
    rows, cols = GRID.shape
    chunk = {"inner": ChunkId(18, 125), "last-row": ChunkId(rows - 1, 3), "last-column": ChunkId(20, cols - 1)}[where]
    window = GRID.window(chunk)
    if where != "inner":
        assert min(window.shape) < PRODUCT.fill_chunk
    arrays = _fetch(chunk)
    expected = oracle(PRODUCT, window)
    for name in BANDS:
        np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)
    requests = use_earth_engine.compute_requests()
    assert len(requests) == len(row_bands(window.shape, 4)) >= (2 if where == "inner" else 1)
    assert all(r["status"] == 200 for r in requests)
    if where == "inner":
        assert 0 < expected["valid"].mean() < 1, "the chunk has masked and valid pixels"


def test_roi_across_four_chunks_and_second_load_from_the_cube(use_earth_engine: LocalEarthEngine, inline: None,
                                                              tmp_path: Path) -> None:
    window = roi_window(ROI_4_CHUNKS, PRODUCT.extent)
    assert len(GRID.chunks(window)) == 4
    ds = load_tcvis(ROI_4_CHUNKS, tmp_path)
    expected = oracle(PRODUCT, window)
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values, expected[name], err_msg=name)
    assert ds.odc.geobox.crs.epsg == 4326 and ds.odc.geobox.extent.contains(ROI_4_CHUNKS.extent.buffer(-1e-6))
    masked = ds.valid.values == 0
    assert masked.any() and (ds.tc_brightness.values[masked] == 0).all()
    assert ((ds.tc_brightness.values == 0) & (ds.valid.values == 1)).any(), "a real 0 stays valid"
    rows = Manifest(cube_paths(tmp_path, PRODUCT).manifest, GRID).latest()
    assert len(rows) == 4 and all(r.status == "full" and r.items_applied == (DEFAULT_TCVIS_EDITION,)
                                  for r in rows.values())

    use_earth_engine.reset_log()
    again = load_tcvis(ROI_4_CHUNKS, tmp_path)
    assert use_earth_engine.requests() == []
    np.testing.assert_array_equal(again.tc_wetness.values, ds.tc_wetness.values)


def test_antimeridian_roi_is_one_contiguous_dataset(use_earth_engine: LocalEarthEngine, inline: None,
                                                    tmp_path: Path) -> None:
    ds = load_tcvis(ANTIMERIDIAN, tmp_path)
    lon = ds.longitude.values
    assert lon[0] < 179.5 and lon[-1] > 180.5 and np.allclose(np.diff(lon), TCVIS_PIXEL)
    window = roi_window(ANTIMERIDIAN, PRODUCT.extent)
    cols = PRODUCT.extent.shape[1]
    east, west = cols - window.col0, window.col1 - cols
    assert east > 0 and west > 0 and east + west == ds.sizes["longitude"]
    expected = oracle(PRODUCT, window)  # east part: the formula at the true centres
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values[:, :east], expected[name][:, :east], err_msg=name)
    west_window = PixelWindow(window.row0, window.row1, 0, west)
    expected_west = oracle(PRODUCT, west_window)  # west part: the cube's first columns, at −180° + …
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values[:, east:], expected_west[name], err_msg=name)


def test_throttling_and_server_errors_are_retried(use_earth_engine: LocalEarthEngine) -> None:
    use_earth_engine.set_faults([429, 503, 503])
    chunk = ChunkId(18, 126)
    arrays = _fetch(chunk)
    expected = oracle(PRODUCT, GRID.window(chunk))
    np.testing.assert_array_equal(arrays["tc_greenness"], expected["tc_greenness"])
    statuses = [r["status"] for r in use_earth_engine.compute_requests()]
    assert sorted(statuses).count(200) == len(row_bands(GRID.window(chunk).shape, 4))
    assert sorted(s for s in statuses if s != 200) == [429, 503, 503]


def test_a_rejected_request_fails_at_once_with_a_typed_error(use_earth_engine: LocalEarthEngine) -> None:
    use_earth_engine.set_faults([400])
    assert get_settings().retries >= 1
    with pytest.raises(SourceRequestError, match="HTTP 400") as raised:
        _fetch(ChunkId(18, 127))
    assert raised.value.source == "earthengine"
    assert [r["status"] for r in use_earth_engine.compute_requests()].count(400) == 1


def test_in_flight_requests_never_exceed_the_setting(use_earth_engine: LocalEarthEngine,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     inline: None, tmp_path: Path) -> None:
    monkeypatch.setenv("DARTS_AUX_EE_MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("DARTS_AUX_DOWNLOAD_WORKERS", "4")
    reload_settings()
    use_earth_engine.set_delay(0.2)
    use_earth_engine.set_max_in_flight(3)  # the server answers 429 beyond 3: none may appear
    load_tcvis(ROI_4_CHUNKS, tmp_path)
    requests = use_earth_engine.compute_requests()
    assert len(requests) == 4 * len(row_bands((PRODUCT.fill_chunk, PRODUCT.fill_chunk), 4))
    assert all(r["status"] == 200 for r in requests)
    assert use_earth_engine.max_in_flight_seen() == 3


def test_editions_are_separate_cubes_with_their_own_pixels(use_earth_engine: LocalEarthEngine, inline: None,
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small = GeoBox.from_bbox((CORNER_LON + 0.01, CORNER_LAT + 0.01, CORNER_LON + 0.05, CORNER_LAT + 0.03),
                             "EPSG:4326", resolution=TCVIS_PIXEL)
    monkeypatch.setenv("DARTS_AUX_TCVIS_EDITION", TCVIS_EDITIONS[3])
    reload_settings()
    ds = load_tcvis(small, tmp_path)
    window = roi_window(small, PRODUCT.extent)
    np.testing.assert_array_equal(ds.tc_brightness.values, oracle(PRODUCT, window, TCVIS_EDITIONS[3])["tc_brightness"])
    assert cube_paths(tmp_path, tcvis(TCVIS_EDITIONS[3])).root.exists()
    assert not cube_paths(tmp_path, PRODUCT).root.exists()


def test_missing_project_and_unknown_edition_say_which_setting(monkeypatch: pytest.MonkeyPatch, inline: None,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv("DARTS_AUX_EE_URL", "http://127.0.0.1:9")
    reload_settings()
    with pytest.raises(ConfigurationError, match="DARTS_AUX_EE_PROJECT"):
        load_tcvis(ROI_4_CHUNKS, tmp_path)
    monkeypatch.setenv("DARTS_AUX_TCVIS_EDITION", "users/nobody/nothing")
    reload_settings()
    with pytest.raises(UnknownEditionError, match="DARTS_AUX_TCVIS_EDITION"):
        load_tcvis(ROI_4_CHUNKS, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_fill_tcvis_flow_under_prefect(use_earth_engine: LocalEarthEngine, via_prefect: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    only_fill_tcvis = FlowFilter(name=FlowFilterName(any_=["fill_tcvis"]))
    with get_client(sync_client=True) as client:  # the session's server holds other tests' runs too
        before = {run.id for run in client.read_flow_runs(flow_filter=only_fill_tcvis)}
    ds = load_tcvis(ANTIMERIDIAN, tmp_path)
    window = roi_window(ANTIMERIDIAN, PRODUCT.extent)
    assert ds.sizes["longitude"] == window.shape[1]
    rows = Manifest(cube_paths(tmp_path, PRODUCT).manifest, GRID).latest()
    assert sorted(rows) == sorted(GRID.chunks(window)) and all(r.status == "full" for r in rows.values())
    with get_client(sync_client=True) as client:
        runs = [run for run in client.read_flow_runs(flow_filter=only_fill_tcvis) if run.id not in before]
    assert len(runs) == 1, [run.name for run in runs]
    assert runs[0].name == "tcvis-2000-2019 1.00×0.20°"
    assert runs[0].state.is_completed()


def test_chunks_arriving_together_share_a_commit_and_the_history_backs_every_row(
        use_earth_engine: LocalEarthEngine, tmp_path: Path) -> None:
    small = replace(PRODUCT, fill_chunk=250, read_chunk=250)
    grid = ChunkGrid(small)
    first = grid.window(ChunkId(18 * 20, 125 * 20))
    window = PixelWindow(first.row0, first.row0 + 3 * 250, first.col0, first.col0 + 4 * 250)  # 12 chunks
    use_earth_engine.set_delay(0.2)  # downloads finish in waves, as they do against Earth Engine
    report = run_inline(FillContext(small, as_location(tmp_path), get_settings()), window)
    assert report.chunks_fetched == 12

    cube = Cube.open(tmp_path, small)
    expected = oracle(small, window)
    stored = cube.read(window)
    for name in BANDS:
        np.testing.assert_array_equal(stored[name], expected[name], err_msg=name)
    commits = {s.id: [row["chunk"] for row in commit_rows(s.metadata or {})] for s in cube.history()}
    listed = sorted(chunk for chunks in commits.values() for chunk in chunks)
    assert listed == sorted(str(c) for c in grid.chunks(window)), "each chunk committed exactly once"
    assert len([c for c in commits.values() if c]) < 12 and max(len(c) for c in commits.values()) > 1

    rows = Manifest(cube.paths.manifest, grid).latest()
    assert all(str(chunk) in commits[row.snapshot_id] for chunk, row in rows.items()), "a row names its commit"
    for record in records_from_history(cube):  # what `manifest rebuild` and `verify` read back
        row = rows[record.chunk]
        assert (record.status, record.items_applied, record.snapshot_id, record.covered) == (
            row.status, row.items_applied, row.snapshot_id, row.covered)
