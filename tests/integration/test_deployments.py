"""Deployments: prefect.yaml as Prefect parses it, each deployment's flow under the test server, artifacts,
revisiting partial chunks, and a real `prefect server start` + `serve` triggered through the API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from darts_aux.flows.deployments import DEPLOYMENTS, PREFECT_YAML, DeploymentSpec, deployment_spec
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_bounds
from darts_aux.local import LocalCatalog, default_spec
from darts_aux.local.earthengine import LocalEarthEngine, tcvis_pixels
from darts_aux.manifest import Manifest
from darts_aux.products import DEFAULT_TCVIS_EDITION, TCVIS_PIXEL, Product, alphaearth, arcticdem, tcvis
from darts_aux.store import Cube, cube_paths

from .conftest import CATALOG_ROOT, REPO_ROOT, formula_oracle, point_at

ARCTICDEM_32 = arcticdem(32)
TO_LONLAT = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
# Next to the supertile corner (700 km, 3,200 km), 500 m inside one chunk at every resolution: the 2 m chunk
# x 701,900 … 703,900 m, y 3,196,100 … 3,198,100 m lies in the 10 m chunk x 699,900 … 709,900, y 3,190,100 …
# 3,200,100 and in the 32 m chunk x 671,904 … 703,904, y 3,172,096 … 3,204,096.
REGION_3413 = (702_400.0, 3_196_600.0, 703_400.0, 3_197_600.0)
HELD_BACK = "72_49_32m_v4.1"  # x 800–900 km, y 3,100–3,200 km: the south half of the catalog's east edge there
EAST_EDGE = 900_096  # no tile east of here: a chunk across it stays partial
AD_HOC_ROI = {"fill-arcticdem": "bounds", "fill-tcvis": "geometry", "fill-alphaearth": "bounds"}
"""The two ad hoc deployments need a region at trigger time; everything else runs on its parameters alone."""


# -- helpers -----------------------------------------------------------------------------------------


def _manifest(data_dir: Path, product: Product) -> Manifest:
    return Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product))


def _lonlat_polygon(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    """A GeoJSON polygon (EPSG:4326) of an EPSG:3413 box, densified so it keeps the box's shape."""
    left, bottom, right, top = bounds
    steps = np.linspace(0, 1, 9)
    ring = ([(left + s * (right - left), bottom) for s in steps] + [(right, bottom + s * (top - bottom)) for s in steps]
            + [(right - s * (right - left), top) for s in steps] + [(left, top - s * (top - bottom)) for s in steps])
    return {"type": "Polygon", "coordinates": [[list(TO_LONLAT.transform(x, y)) for x, y in ring]]}


@pytest.fixture
def loopback_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local Earth Engine sets https_proxy for the client's stray fetch;
    keep Prefect's loopback websocket off it."""
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(key, "127.0.0.1,localhost")


_RUNS: list[Any] = []
"""Flow runs this module made on the session's test server."""


@pytest.fixture(autouse=True)
def _forget_own_flow_runs() -> Iterator[None]:
    """Delete this module's flow runs from the shared test server afterwards: other modules count theirs."""
    yield
    if not _RUNS:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while _RUNS:
            client.delete_flow_run(_RUNS.pop())


def _run(spec: DeploymentSpec, **extra: Any) -> Any:
    """Run a deployment's flow as a deployment run would: its parameters (+ the trigger's), validated."""
    flow = spec.load_flow()
    parameters = flow.validate_parameters({**spec.parameters, **extra})
    state = flow(**parameters, return_state=True)
    _RUNS.append(state.state_details.flow_run_id)
    return state


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    """The flow run's artifacts by key, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in found}


def _table(artifact: Any) -> list[dict[str, Any]]:
    assert artifact.type == "table"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _assert_table_matches_manifest(table: list[dict[str, Any]], data_dir: Path, product: Product) -> None:
    """Every row of the chunk table agrees with the chunk's manifest row."""
    latest = _manifest(data_dir, product).latest()
    assert table
    for row in table:
        record = latest[ChunkId.parse(row["chunk"])]
        assert row["status"] == record.status
        assert row["items_applied"] == ", ".join(record.items_applied)
        assert row["coverage"] == pytest.approx(record.coverage, abs=1e-4)
        if row["action"] == "fetched":
            assert row["bytes"] > 0 and row["seconds"] > 0 and row["new_items"] > 0


def _assert_summary_has_map(markdown: str, product: Product, data_dir: Path) -> None:
    assert markdown.startswith(f"# {product.key} fill")
    assert "](data:image/png;base64,iVBORw0KGgo" in markdown, "the coverage map is embedded as a PNG data URI"
    png = Path(markdown.rsplit("`", 2)[-2])
    assert png.parent == data_dir / "quicklooks" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _assert_cube_equals_formula(catalog: LocalCatalog, data_dir: Path, resolution: int, chunks: list[ChunkId]) -> None:
    product, grid = arcticdem(resolution), ChunkGrid(arcticdem(resolution))
    cube = Cube.open(data_dir, product)
    for chunk in chunks:
        window = grid.window(chunk)
        arrays = cube.read(window)
        dem, mask = formula_oracle(catalog, resolution, window)
        np.testing.assert_array_equal(arrays["dem"], dem, err_msg=f"{resolution} m {chunk}")
        np.testing.assert_array_equal(arrays["datamask"], mask, err_msg=f"{resolution} m {chunk}")


def _tcvis_oracle(window: PixelWindow) -> dict[str, np.ndarray]:
    product = tcvis()
    left, _, _, top = window_bounds(product.extent, window)
    rows, cols = window.shape
    lon = left + (np.arange(cols) + 0.5) * TCVIS_PIXEL
    lat = top - (np.arange(rows) + 0.5) * TCVIS_PIXEL
    pixels = tcvis_pixels(DEFAULT_TCVIS_EDITION, lon[None, :], lat[:, None])
    return {"tc_brightness": pixels["TCB_slope"], "tc_greenness": pixels["TCG_slope"],
            "tc_wetness": pixels["TCW_slope"], "valid": pixels["valid"]}


# -- prefect.yaml as Prefect reads it ----------------------------------------------------------------


def test_prefect_yaml_declares_the_served_deployments_and_each_entrypoint_is_a_flow() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import Flow
    from prefect.utilities.callables import parameter_schema

    raw = yaml.safe_load(PREFECT_YAML.read_text())
    model = PrefectYamlModel.model_validate(raw)  # Prefect's own schema of prefect.yaml (what `prefect deploy` uses)
    assert model.pull == [], "module entrypoints: no pull step, the worker imports the installed package"
    declared = {d.name: d for d in model.deployments}
    assert list(declared) == [spec.name for spec in DEPLOYMENTS] == [
        "revisit-partial-chunks", "prefetch-regions", "fill-arcticdem", "fill-tcvis", "fill-alphaearth",
        "compact-manifest"]
    flow_names = {}
    for spec in DEPLOYMENTS:
        entry = declared[spec.name]
        assert entry.entrypoint == spec.entrypoint and entry.parameters == spec.parameters
        assert entry.description == spec.description and entry.tags == list(spec.tags)
        assert entry.work_pool is not None and entry.work_pool.name == "darts-aux"
        crons = [(s.cron, s.timezone) for s in entry.schedules or []]
        assert crons == ([(spec.cron, "UTC")] if spec.cron else [])
        flow = spec.load_flow()
        assert isinstance(flow, Flow)
        flow_names[spec.name] = flow.name
        schema = parameter_schema(flow)
        assert set(spec.parameters) <= set(schema.properties), f"{spec.name}: unknown parameter"
        assert "data_dir" in schema.properties
        missing = set(schema.required or []) - set(spec.parameters)
        assert not missing, f"{spec.name}: required parameters without a value: {missing}"
        extra = {"bounds": [1.0, 2.0, 3.0, 4.0]} if spec.name in AD_HOC_ROI else {}
        flow.validate_parameters({**spec.parameters, **extra})
    assert flow_names == {"revisit-partial-chunks": "revisit_partial_chunks", "prefetch-regions": "prefetch_regions",
                          "fill-arcticdem": "fill_arcticdem", "fill-tcvis": "fill_tcvis",
                          "fill-alphaearth": "fill_alphaearth", "compact-manifest": "compact_manifest"}
    by_day = {spec.name: spec.cron for spec in DEPLOYMENTS}
    assert by_day["revisit-partial-chunks"] == "0 3 * * *" and by_day["prefetch-regions"].endswith("* * 1")


def test_runner_deployments_carry_data_dir_schedules_and_module_entrypoints(tmp_path: Path) -> None:
    from darts_aux.flows.deployments import runner_deployments

    served = {d.name: d for d in runner_deployments(tmp_path / "cubes")}
    assert list(served) == [spec.name for spec in DEPLOYMENTS]
    for spec in DEPLOYMENTS:
        deployment = served[spec.name]
        assert deployment.entrypoint == spec.entrypoint
        assert deployment.parameters == {**spec.parameters, "data_dir": str(tmp_path / "cubes")}
        assert [s.schedule.cron for s in deployment.schedules] == ([spec.cron] if spec.cron else [])
        assert all(s.schedule.timezone == "UTC" for s in deployment.schedules)


def test_runner_deployments_inside_an_event_loop_say_to_build_them_from_synchronous_code() -> None:
    """Inside a running event loop Prefect's to_deployment returns coroutines: refused, not handed to serve."""
    import asyncio

    from darts_aux.errors import ConfigurationError
    from darts_aux.flows.deployments import runner_deployments

    async def build() -> object:
        return runner_deployments()

    with pytest.raises(ConfigurationError, match="outside a running event loop.*from synchronous code"):
        asyncio.run(build())


def test_serve_all_without_a_prefect_server_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from darts_aux.errors import ConfigurationError
    from darts_aux.flows.deployments import serve_all

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(
            ConfigurationError, match="prefect server start.*PREFECT_API_URL"):
        serve_all()


# -- each deployment's flow under the test server ----------------------------------------------------


def test_fill_arcticdem_deployment_with_a_lonlat_bbox(
    use_catalog: LocalCatalog, via_prefect: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    data_dir = tmp_path / "data"  # DARTS_AUX_DATA_DIR: the deployment leaves data_dir to the environment
    lons, lats = TO_LONLAT.transform([650_000, 650_000, 690_000, 690_000], [3_150_000, 3_190_000, 3_150_000, 3_190_000])
    lonlat = (min(lons), min(lats), max(lons), max(lats))
    with get_client(sync_client=True) as client:  # as `prefect concurrency-limit create download-arcticdem 8` does
        client.create_concurrency_limit(tag="download-arcticdem", concurrency_limit=8)
    try:
        state = _run(deployment_spec("fill-arcticdem"), bounds=list(lonlat), crs="EPSG:4326")
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("download-arcticdem")
    report = state.result()
    window = roi_window(GeoBox.from_bbox(lonlat, "EPSG:4326", shape=(1, 1), tight=True), ARCTICDEM_32.extent)
    chunks = ChunkGrid(ARCTICDEM_32).chunks(window)
    rows = _manifest(data_dir, ARCTICDEM_32).latest()
    assert (sorted(rows) == sorted(chunks) == sorted(r.chunk for r in report.records)
            and report.chunks_fetched == len(chunks))
    _assert_cube_equals_formula(use_catalog, data_dir, 32, chunks)

    run_id = state.state_details.flow_run_id
    artifacts = _artifacts(run_id)
    assert set(artifacts) == {"arcticdem-32m-chunks", "arcticdem-32m-summary"}
    table = _table(artifacts["arcticdem-32m-chunks"])
    assert sorted(r["chunk"] for r in table) == sorted(str(c) for c in chunks)
    assert {r["action"] for r in table} == {"fetched"}
    assert sum(r["bytes"] for r in table) == report.bytes_read
    _assert_table_matches_manifest(table, data_dir, ARCTICDEM_32)
    summary = artifacts["arcticdem-32m-summary"].data
    _assert_summary_has_map(summary, ARCTICDEM_32, data_dir)
    assert f"{len(chunks)} fetched" in summary and use_catalog.stac_url in summary
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        name = client.read_flow_run(run_id).name
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    left, bottom, right, top = window_bounds(ARCTICDEM_32.extent, window)
    assert name == f"arcticdem-32m {(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"
    # Tags for concurrency limits: `download` (every source) and `download-arcticdem` (this source only), carried
    # while a limit on one of them exists (here on download-arcticdem; none on the commit tasks' tags).
    tags = {run.name: sorted(run.tags) for run in task_runs}
    assert tags[f"download-{chunks[0]}"] == ["arcticdem", "arcticdem-32m", "download", "download-arcticdem"]
    assert tags[f"commit-{chunks[0]}"] == []
    assert tags["discover-arcticdem-32m"] == ["arcticdem", "arcticdem-32m"]

    again = _run(deployment_spec("fill-arcticdem"), bounds=list(lonlat), crs="EPSG:4326")
    assert again.result().chunks_fetched == 0
    rerun = _table(_artifacts(again.state_details.flow_run_id)["arcticdem-32m-chunks"])
    assert sorted((r["chunk"], r["action"]) for r in rerun) == sorted((str(c), "reused") for c in chunks)


def test_fill_tcvis_deployment_with_a_geojson_geometry(
    use_earth_engine: LocalEarthEngine, loopback_no_proxy: None, via_prefect: None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    product, grid = tcvis(), ChunkGrid(tcvis())
    # A small polygon inside one TCVIS chunk, as a Feature (what a GeoJSON export holds).
    lon0 = product.extent.x0 + (125 * product.fill_chunk + 2000) * TCVIS_PIXEL
    lat0 = product.extent.y0 - (18 * product.fill_chunk + 2000) * TCVIS_PIXEL
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon0 + 0.05, lat0],
                                                                [lon0 + 0.05, lat0 + 0.02], [lon0, lat0]]]}}
    state = _run(deployment_spec("fill-tcvis"), geometry=json.dumps(feature))
    report = state.result()
    assert report.chunks_fetched == 1
    rows = _manifest(data_dir, product).latest()
    assert list(rows) == [ChunkId(18, 125)] and rows[ChunkId(18, 125)].status == "full"
    arrays = Cube.open(data_dir, product).read(grid.window(ChunkId(18, 125)))
    expected = _tcvis_oracle(grid.window(ChunkId(18, 125)))
    for name, values in expected.items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)
    artifacts = _artifacts(state.state_details.flow_run_id)
    table = _table(artifacts[f"{product.key}-chunks"])
    assert [(r["chunk"], r["action"], r["status"], r["items_applied"]) for r in table] == [
        ("r0018c0125", "fetched", "full", DEFAULT_TCVIS_EDITION)]
    _assert_summary_has_map(artifacts[f"{product.key}-summary"].data, product, data_dir)


def test_fill_alphaearth_deployment_fills_each_year_with_its_artifacts_and_quicklook(
    use_earth_engine: LocalEarthEngine, loopback_no_proxy: None, via_prefect: None, tmp_path: Path
) -> None:
    from darts_aux.local.earthengine.alphaearth import alphaearth_pixels

    data_dir = tmp_path / "data"
    product = alphaearth()
    bounds = [600_500.0, 3_146_000.0, 601_500.0, 3_147_000.0]  # inside chunk r0095c0460 of the 10 m grid
    state = _run(deployment_spec("fill-alphaearth"), bounds=bounds, years=[2018, 2023])
    report = state.result()
    assert report.chunks_fetched == 2 and report.product == product.key
    assert len(use_earth_engine.compute_requests()) == 2 * 7
    grid = ChunkGrid(product)
    window = grid.window(ChunkId(95, 460))
    left, _, _, top = window_bounds(product.extent, window)
    x = left + (np.arange(window.shape[1]) + 0.5) * 10.0
    y = top - (np.arange(window.shape[0]) + 0.5) * 10.0
    artifacts = _artifacts(state.state_details.flow_run_id)
    for year in (2018, 2023):
        cube = product.at(year)
        rows = _manifest(data_dir, cube).latest()
        assert list(rows) == [ChunkId(95, 460)] and rows[ChunkId(95, 460)].status == "full"
        values, valid = alphaearth_pixels(year, x[None, :], y[:, None])
        stored = Cube.open(data_dir, cube).read(window)["A07"]
        decoded = product.variable("A07").quantisation.decode(stored)  # type: ignore[union-attr]
        expected = values[..., 7].astype(np.float32)
        expected[~valid] = np.nan
        np.testing.assert_array_equal(decoded, expected, err_msg=str(year))
        slug = f"alphaearth-10m-{year}"
        table = _table(artifacts[f"{slug}-chunks"])
        assert [(r["chunk"], r["action"], r["status"]) for r in table] == [("r0095c0460", "fetched", "full")]
        summary = artifacts[f"{slug}-summary"].data
        assert summary.startswith(f"# {cube.key} fill")
        assert "![A01/A16/A09 as RGB](data:image/png;base64,iVBORw0KGgo" in summary, "the embedding quicklook"
    from prefect.exceptions import ParameterTypeError

    flow = deployment_spec("fill-alphaearth").load_flow()
    with pytest.raises(ParameterTypeError, match="2017"):  # a year the collection lacks: refused before any run
        flow.validate_parameters({"bounds": bounds, "years": [2016]})


def test_prefetch_regions_deployment_fills_every_cube_for_the_regions_file(
    use_catalog: LocalCatalog, use_earth_engine: LocalEarthEngine, loopback_no_proxy: None, via_prefect: None,
    tmp_path: Path,
) -> None:
    import geopandas as gpd
    from shapely.geometry import shape

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    regions = gpd.GeoDataFrame({"name": ["corner"]}, geometry=[shape(_lonlat_polygon(REGION_3413))], crs="EPSG:4326")
    regions.to_file(data_dir / "regions.geojson", driver="GeoJSON")  # the deployment's default regions file

    state = _run(deployment_spec("prefetch-regions"))
    reports = state.result()
    edition = tcvis()
    assert sorted(reports) == ["arcticdem-10m", "arcticdem-2m", "arcticdem-32m", edition.key]
    artifacts = _artifacts(state.state_details.flow_run_id)
    assert set(artifacts) == {f"{key}-{kind}" for key in reports for kind in ("chunks", "summary")}
    for resolution in (2, 10, 32):
        product = arcticdem(resolution)
        window = roi_window(GeoBox.from_bbox(REGION_3413, "EPSG:3413", shape=(1, 1), tight=True), product.extent)
        chunks = ChunkGrid(product).chunks(window)
        assert len(chunks) == 1
        rows = _manifest(data_dir, product).latest()
        assert list(rows) == chunks and rows[chunks[0]].items_applied, f"{resolution} m"
        _assert_cube_equals_formula(use_catalog, data_dir, resolution, chunks)
        table = _table(artifacts[f"{product.key}-chunks"])
        assert [(r["chunk"], r["region"], r["action"]) for r in table] == [(str(chunks[0]), "corner", "fetched")]
        _assert_table_matches_manifest(table, data_dir, product)
    tcvis_rows = _manifest(data_dir, edition).latest()
    assert tcvis_rows and all(r.status == "full" for r in tcvis_rows.values())

    # A load of the region afterwards is served from the cubes: no request reaches the catalog.
    from darts_aux import load_arcticdem

    use_catalog.reset_log()
    ds = load_arcticdem(GeoBox.from_bbox(REGION_3413, "EPSG:3413", resolution=10), data_dir, 10)
    assert use_catalog.requests() == [] and np.isfinite(ds.dem.values).any()


def test_compact_manifest_deployment_folds_every_cube(
    use_catalog: LocalCatalog, inline: None, prefect_server: None, tmp_path: Path
) -> None:
    from darts_aux import load_arcticdem
    from darts_aux.manifest import ChunkRecord, utc_now

    data_dir = tmp_path / "data"
    load_arcticdem(GeoBox.from_bbox((650_000, 3_150_000, 660_000, 3_160_000), "EPSG:3413", resolution=32), None, 32)
    manifest = _manifest(data_dir, ARCTICDEM_32)
    (filled,) = manifest.latest().values()
    manifest.append([filled.touched(utc_now())])  # a revisit's row: a second segment
    # The TCVIS cube (which darts_aux.cubes.compact_all does not list) with two segments of its own.
    Cube.open_or_create(data_dir, tcvis())
    tcvis_manifest = _manifest(data_dir, tcvis())
    for col in (125, 126):
        tcvis_manifest.append([ChunkRecord(ChunkId(18, col), "full", (DEFAULT_TCVIS_EDITION,), (), 1.0, utc_now(),
                                           None)])
    products = [ARCTICDEM_32, tcvis()]
    before = {p.key: _manifest(data_dir, p).latest() for p in products}
    assert [len(_manifest(data_dir, p).files()) for p in products] == [2, 2]

    state = _run(deployment_spec("compact-manifest"))
    assert state.result() == {ARCTICDEM_32.key: 2, tcvis().key: 2}
    for product in products:
        manifest = _manifest(data_dir, product)
        assert len(manifest.files()) == 1 and manifest.files()[0].name.startswith("compacted-")
        assert manifest.latest() == before[product.key]
    assert _run(deployment_spec("compact-manifest")).result() == {ARCTICDEM_32.key: 0, tcvis().key: 0}


# -- revisit-partial-chunks -----------------------------------------------------------------------------


@pytest.fixture
def held_back_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCatalog]:
    with LocalCatalog(CATALOG_ROOT, default_spec().with_held_back([HELD_BACK])) as running:
        point_at(running, monkeypatch)
        yield running


def test_revisit_partial_chunks_turns_a_partial_chunk_full_once_its_tile_arrives(
    held_back_catalog: LocalCatalog, inline: None, prefect_server: None, tmp_path: Path
) -> None:
    from darts_aux import load_arcticdem

    catalog, data_dir, grid = held_back_catalog, tmp_path / "data", ChunkGrid(ARCTICDEM_32)
    # Three chunks: SHARED lacks the held-back tile, COAST crosses the catalog's east edge, FULL is whole.
    # SHARED is r0028c0152 (x 863,904 … 895,904 m, y 3,172,096 … 3,204,096 m): 73_49 covers its north strip, the
    # held-back 72_49 the rest. COAST is r0028c0153, east of it, across the edge; both tiles reach into it.
    shared_roi = GeoBox.from_bbox((870_000, 3_180_000, 890_000, 3_200_000), "EPSG:3413", resolution=32)
    coast_roi = GeoBox.from_bbox((EAST_EDGE - 3_000, 3_180_000, EAST_EDGE + 20_000, 3_200_000), "EPSG:3413",
                                 resolution=32)
    full_roi = GeoBox.from_bbox((560_000, 3_050_000, 570_000, 3_060_000), "EPSG:3413", resolution=32)
    (shared,) = grid.chunks(roi_window(shared_roi, ARCTICDEM_32.extent))
    (coast,) = grid.chunks(roi_window(coast_roi, ARCTICDEM_32.extent))
    (full,) = grid.chunks(roi_window(full_roi, ARCTICDEM_32.extent))
    assert coast == ChunkId(shared.row, shared.col + 1), "adjacent partial chunks: one window, one search"
    for roi in (shared_roi, coast_roi, full_roi):
        load_arcticdem(roi, data_dir, 32)  # in-process: the revisits below are the flows under test
    first = _manifest(data_dir, ARCTICDEM_32).latest()
    assert (first[shared].status, first[coast].status, first[full].status) == ("partial", "partial", "full")
    assert HELD_BACK not in first[shared].items_applied

    # Nothing new yet: both partial chunks are searched (once), nothing is read, both stay partial.
    catalog.reset_log()
    quiet = _run(deployment_spec("revisit-partial-chunks"))
    assert quiet.result()[ARCTICDEM_32.key].chunks_rechecked == 2
    searches = [r for r in catalog.requests("stac") if r["path"].rstrip("/").endswith("/search")]
    assert len(searches) == 1 and catalog.requests("files") == []
    second = _manifest(data_dir, ARCTICDEM_32).latest()
    assert (second[shared].checked_at > first[shared].checked_at
            and second[shared].snapshot_id == first[shared].snapshot_id)
    assert second[full] == first[full]

    catalog.publish(HELD_BACK)
    state = _run(deployment_spec("revisit-partial-chunks"))
    report = state.result()[ARCTICDEM_32.key]
    # The held-back tile's 96 m buffer reaches into COAST too: merged there, which stays partial (the east edge).
    assert (report.chunks_fetched, report.chunks_rechecked, report.chunks_total) == (2, 0, 2)
    after = _manifest(data_dir, ARCTICDEM_32).latest()
    assert after[shared].status == "full" and after[shared].coverage == 1.0 and HELD_BACK in after[shared].items_applied
    assert set(first[shared].items_applied) < set(after[shared].items_applied)
    assert after[shared].snapshot_id != first[shared].snapshot_id
    assert after[coast].status == "partial" and HELD_BACK in after[coast].items_applied and after[full] == first[full]
    assert sorted(after) == sorted([shared, coast, full]), "chunks the manifest never listed are not touched"
    _assert_cube_equals_formula(catalog, data_dir, 32, [shared])
    dem, _ = formula_oracle(catalog, 32, grid.window(shared), items=[i for i in catalog.published() if i != HELD_BACK])
    assert np.isnan(dem).sum() > np.isnan(Cube.open(data_dir, ARCTICDEM_32).read(grid.window(shared))["dem"]).sum()

    artifacts = _artifacts(state.state_details.flow_run_id)
    table = _table(artifacts["arcticdem-32m-chunks"])
    assert sorted((r["chunk"], r["action"], r["status"], r["new_items"]) for r in table) == sorted(
        [(str(shared), "fetched", "full", 1), (str(coast), "fetched", "partial", 1)])
    assert all(HELD_BACK in r["items_applied"] for r in table)
    _assert_table_matches_manifest(table, data_dir, ARCTICDEM_32)
    summary = artifacts["arcticdem-32m-summary"].data
    assert "2 fetched" in summary and "0 rechecked" in summary and "1 full, 1 partial" in summary
    quiet_table = _table(_artifacts(quiet.state_details.flow_run_id)["arcticdem-32m-chunks"])
    assert sorted((r["chunk"], r["action"], r["bytes"]) for r in quiet_table) == [
        (str(shared), "rechecked", 0), (str(coast), "rechecked", 0)]


# -- a real Prefect server, the deployments served, a run triggered through the API ------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt a process group this test started, then kill it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def prefect_server_process(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields (API URL, client env)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DARTS_AUX_"))}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(0.5)
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        _stop(server)
        log.close()


def _assert_bad_parameters_refused_at_creation(deployment_id: Any) -> None:
    """The server checks parameters against the flow's types when a run is created: none is created."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    bad = {"resolution": 5, "bounds": [650_000.0, 3_150_000.0, 690_000.0, 3_190_000.0]}
    with get_client(sync_client=True) as client:
        before = len(client.read_flow_runs())
        for parameters in (bad, {**bad, "resolution": 32, "bounds": [1.0, 2.0, 3.0]}, {**bad, "resolution": 32,
                                                                                        "buffer": -1}):
            with pytest.raises(PrefectHTTPStatusError, match="409") as refused:
                client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
            assert "Validation failed" in refused.value.response.text
        assert len(client.read_flow_runs()) == before


def _wait_for_error_logs(flow_run_id: Any) -> list[Any]:
    """The flow run's error-level log records, once the run's process has sent them (it sends in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        if any("Finished in state" in log.message for log in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not any("Traceback" in log.message for log in logs), [log.message for log in logs]
    return [log for log in logs if log.level >= 40]


def test_served_fill_arcticdem_triggered_through_the_api_publishes_artifacts(
    catalog: LocalCatalog, prefect_server_process: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env = prefect_server_process
    data_dir = tmp_path / "served-data"
    # `prefect deploy` parses deployments/prefect.yaml against the server (into a process work pool) ...
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        from prefect.client.schemas.actions import WorkPoolCreate

        client.create_work_pool(WorkPoolCreate(name="darts-aux", type="process"))
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)]
    deployed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        on_server = {d.name: d for d in client.read_deployments()}
        assert sorted(on_server) == sorted(spec.name for spec in DEPLOYMENTS)
        for spec in DEPLOYMENTS:
            deployment = on_server[spec.name]
            assert deployment.entrypoint == spec.entrypoint and deployment.parameters == spec.parameters
            assert deployment.work_pool_name == "darts-aux" and deployment.pull_steps == []
            assert [s.schedule.cron for s in deployment.schedules] == ([spec.cron] if spec.cron else [])
            client.delete_deployment(deployment.id)  # the served ones below are made afresh, without a work pool

    # ... and `serve_all` serves the same deployments from a process of its own.
    serve_env = {**env, "DARTS_AUX_STAC_URL": catalog.stac_url, "DARTS_AUX_RETRY_DELAY_SECONDS": "0.05",
                 "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    serve_log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "darts_aux.flows.deployments", "--data-dir", str(data_dir)],
                             cwd=tmp_path, env=serve_env, stdout=serve_log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            deadline = time.monotonic() + 90
            while True:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                with get_client(sync_client=True) as client:
                    served = {d.name: d for d in client.read_deployments()}
                if len(served) == len(DEPLOYMENTS):
                    break
                assert time.monotonic() < deadline, "serve did not register the deployments"
                time.sleep(0.5)
            assert all(served[s.name].parameters == {**s.parameters, "data_dir": str(data_dir)} for s in DEPLOYMENTS)
            assert served["fill-arcticdem"].work_pool_name is None, "served: the runner, not a worker, runs it"
            catalog.reset_log()
            bounds = [676_000.0, 3_176_000.0, 696_000.0, 3_196_000.0]  # inside 32 m chunk r0028c0146
            flow_run = run_deployment("fill_arcticdem/fill-arcticdem", parameters={"bounds": bounds},
                                      timeout=180, poll_interval=1)
            assert flow_run.state is not None and flow_run.state.is_completed(), (
                flow_run.state, (tmp_path / "serve.log").read_text()[-4000:])
            assert flow_run.name == "arcticdem-32m 20×20 km"
            assert flow_run.parameters == {"resolution": 32, "bounds": bounds, "data_dir": str(data_dir)}
            with get_client(sync_client=True) as client:
                artifacts = {a.key: a for a in client.read_artifacts(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))}
            assert catalog.requests("files"), "the served run read the tiles from the local catalog"
            _assert_bad_parameters_refused_at_creation(served["fill-arcticdem"].id)
            catalog.reset_log()
            reversed_bounds = [690_000.0, 3_150_000.0, 650_000.0, 3_190_000.0]
            bad = run_deployment("fill_arcticdem/fill-arcticdem", parameters={"bounds": reversed_bounds},
                                 timeout=180, poll_interval=1)
            assert bad.state is not None and bad.state.is_failed(), bad.state
            assert bad.state.message == ("bounds 690000 3150000 650000 3190000 is empty: it needs left < right and "
                                         "bottom < top, in the order left, bottom, right, top (a region across the "
                                         "antimeridian continues past 180, e.g. 179.5 … 180.5).")
            assert bad.name == "arcticdem-32m (region not usable)"
            assert catalog.requests() == [], "a run with unusable bounds asks the catalog nothing"
            errors = _wait_for_error_logs(bad.id)
            assert [log.message for log in errors] == [bad.state.message], "one error line: the reason"
    finally:
        _stop(serve)
        serve_log.close()
    serve_output = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in serve_output, serve_output[-4000:]
    assert serve_output.count("bounds 690000 3150000 650000 3190000 is empty") >= 1
    assert set(artifacts) == {"arcticdem-32m-chunks", "arcticdem-32m-summary"}
    window = roi_window(GeoBox.from_bbox(tuple(bounds), "EPSG:3413", resolution=32), ARCTICDEM_32.extent)
    (chunk,) = ChunkGrid(ARCTICDEM_32).chunks(window)
    table = _table(artifacts["arcticdem-32m-chunks"])
    assert [(r["chunk"], r["action"], r["status"]) for r in table] == [(str(chunk), "fetched", "full")]
    _assert_table_matches_manifest(table, data_dir, ARCTICDEM_32)
    _assert_summary_has_map(artifacts["arcticdem-32m-summary"].data, ARCTICDEM_32, data_dir)
    _assert_cube_equals_formula(catalog, data_dir, 32, [chunk])
