"""Fills on Ray: a prefetch through Prefect with the Ray task runner, and DARTS's own pattern of plain Ray tasks.

The module starts one local Ray instance of 2 CPUs in this process (the driver), as a DARTS pipeline has one; the
Ray task runner then uses that connection, as it does inside such a pipeline. Ray is kept on loopback and quiet:
the node address is 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's switch for a single-machine instance),
usage stats are off, and plain-HTTP requests that are not for loopback go to a closed loopback port (Ray's
dashboard process asks cloud metadata addresses which cloud it runs on, whether usage stats are on or not). Workers
run this interpreter (RAY_ENABLE_UV_RUN_RUNTIME_ENV=0: under `uv run` Ray would otherwise copy the working
directory, virtual environment included, and start each worker through `uv run`).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from odc.geo.geobox import GeoBox
from shapely.geometry import box
from shapely.ops import unary_union

from darts_aux import download_arcticdem
from darts_aux.cubes import commit_rows
from darts_aux.errors import ConfigurationError, MissingExtraError
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, bounds_window, window_bounds
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.settings import get_settings, reload_settings
from darts_aux.store import Cube, cube_paths

from .conftest import published_tiles, rasterio_mosaic

PRODUCT = arcticdem(2)
GRID = ChunkGrid(PRODUCT)
RAY_CPUS = 2
SCENES = {
    "west": (697_600.0, 3_198_400.0, 700_600.0, 3_201_800.0),
    "north": (698_800.0, 3_199_700.0, 702_300.0, 3_202_400.0),
    "east": (699_400.0, 3_197_700.0, 702_400.0, 3_200_800.0),
    "south": (697_900.0, 3_197_600.0, 701_200.0, 3_199_900.0),
}
"""Scene footprints (EPSG:3413) that overlap each other around the 2 m subtile corner (700 km, 3,200 km), where
the local catalog's four 2 m tiles hold data; together they touch the chunks on both sides of the corner."""


def scene_window(bounds: tuple[float, float, float, float]) -> PixelWindow:
    return bounds_window(PRODUCT.extent, bounds)


def scene_chunks() -> list[ChunkId]:
    """Every chunk some scene touches (scenes are rectangles: the chunks of their windows)."""
    return sorted({chunk for bounds in SCENES.values() for chunk in GRID.chunks(scene_window(bounds))})


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance of RAY_CPUS CPUs on loopback, started in this process for the module."""
    proxy = f"http://127.0.0.1:{_closed_loopback_port()}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "http_proxy": proxy, "HTTP_PROXY": proxy,
                           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}.items():
            patch.setenv(key, value)
        import ray
        from ray._private import ray_constants

        # both are read when ray is imported, which may have happened before this fixture
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        patch.setattr(ray_constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", False)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the scene task: workers lack tests/
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level="warning")
        try:
            yield ray
        finally:
            ray.shutdown()
            ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# -- the setting and its refusals ------------------------------------------------------------------------------


def test_runner_setting_picks_a_local_ray_instance_or_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from darts_aux.flows.ray_runner import ServerBoundRayTaskRunner
    from darts_aux.flows.runners import fill_task_runner, task_slots

    monkeypatch.setenv("DARTS_AUX_TASK_RUNNER", "ray")
    monkeypatch.setenv("DARTS_AUX_RAY_WORKERS", "3")
    local = fill_task_runner(reload_settings())
    assert isinstance(local, ServerBoundRayTaskRunner) and local.address is None
    assert local.init_kwargs["num_cpus"] == 3 and local.init_kwargs["include_dashboard"] is False
    assert task_slots(get_settings()) == 3
    monkeypatch.setenv("DARTS_AUX_RAY_ADDRESS", "ray://127.0.0.1:10001")
    remote = fill_task_runner(reload_settings())
    assert remote.address == "ray://127.0.0.1:10001" and "num_cpus" not in remote.init_kwargs
    monkeypatch.setenv("DARTS_AUX_RAY_ADDRESS", "auto")
    joined = fill_task_runner(reload_settings())
    assert joined.init_kwargs["address"] == "auto", "'auto' joins a running cluster and never starts one"


def test_the_ray_task_runner_without_the_ray_extra_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from darts_aux.flows.runners import fill_task_runner

    monkeypatch.setitem(sys.modules, "prefect_ray", None)
    with pytest.raises(MissingExtraError) as raised:
        fill_task_runner(get_settings().model_copy(update={"task_runner": "ray"}))
    assert str(raised.value) == ("DARTS_AUX_TASK_RUNNER=ray needs prefect-ray, which is not installed: install "
                                 "darts-aux[ray] (pip install 'darts-aux[ray]').")


def test_the_ray_task_runner_refuses_prefects_temporary_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Prefect API every Ray worker would start a temporary server of its own: one line, before Ray."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from darts_aux.flows.runners import fill_task_runner

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = fill_task_runner(get_settings().model_copy(update={"task_runner": "ray"}))
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(ConfigurationError) as raised:
        runner.__enter__()
    assert str(raised.value) == (
        "DARTS_AUX_TASK_RUNNER=ray needs a running Prefect server, and this flow runs on Prefect's temporary one, "
        "which Ray workers cannot reach: start one with 'prefect server start' and set PREFECT_API_URL, or use "
        "DARTS_AUX_TASK_RUNNER=threads.")
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized(), "no Ray started"


# -- a prefetch through Prefect on Ray ------------------------------------------------------------------------


def _ray_tasks(ray: Any, name: str) -> list[dict[str, Any]]:
    """Ray's own record of the tasks called `name` that ran: one event per task, with its worker ('tid')."""
    return [event for event in ray.timeline() if event.get("cat") == f"task::{name}" and event.get("ph") == "X"]


def test_download_on_ray_through_a_prefect_server_is_exact(ray_instance: Any, use_catalog: LocalCatalog,
                                                          forget_new_flow_runs: None, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARTS_AUX_TASK_RUNNER", "ray")
    monkeypatch.setenv("DARTS_AUX_RAY_WORKERS", str(RAY_CPUS))
    reload_settings()
    scenes = gpd.GeoDataFrame({"scene": list(SCENES)}, geometry=[box(*b) for b in SCENES.values()], crs=3413)
    chunks = scene_chunks()
    assert len(chunks) >= 4
    report = download_arcticdem(scenes.to_crs(4326), tmp_path, 2)
    assert (report.chunks, report.chunks_fetched, report.failures) == (len(chunks), len(chunks), ())

    downloads, commits = _ray_tasks(ray_instance, "download"), _ray_tasks(ray_instance, "commit")
    assert len(downloads) == len(commits) == len(chunks), "one chunk per task at this size, every task on Ray"
    assert len({event["tid"] for event in downloads}) == RAY_CPUS, f"downloads on both Ray workers: {downloads}"

    cube, finite = Cube.open(tmp_path, PRODUCT), []
    for chunk in chunks:  # the chunks the scenes touch (not every chunk of their bounding box)
        got = cube.read(GRID.window(chunk))
        expected = rasterio_mosaic(use_catalog, 2, GRID.window(chunk))
        np.testing.assert_array_equal(got["dem"], expected["dem"], err_msg=str(chunk))
        np.testing.assert_array_equal(got["datamask"], expected["datamask"], err_msg=str(chunk))
        finite.append(np.isfinite(got["dem"]).mean())
    assert np.mean(finite) > 0.3

    rows = Manifest(cube_paths(tmp_path, PRODUCT).manifest, GRID).latest()
    assert sorted(rows) == chunks
    for chunk, row in rows.items():
        tiles = published_tiles(use_catalog, 2, GRID.window(chunk))
        covered = unary_union([box(*t.bounds) for t in tiles]).covers(box(*window_bounds(PRODUCT.extent,
                                                                                         GRID.window(chunk))))
        assert row.items_applied == tuple(sorted(t.item_id for t in tiles)) and not row.items_failed, chunk
        assert row.status == ("full" if covered else "partial") and row.snapshot_id, chunk


# -- DARTS's pattern: scenes as plain Ray tasks, each loading what it needs into one shared cube -----------------


def load_scene(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float],
               gate: str, parties: int) -> dict[str, Any]:
    """A DARTS scene task: `load_arcticdem` of the scene's footprint once `parties` tasks reached the `gate` folder
    (imports done before)."""
    from darts_aux import load_arcticdem

    for key, value in settings.items():
        os.environ[key] = value
    reload_settings()
    geobox = GeoBox.from_bbox(bounds, "EPSG:3413", resolution=2)
    wait_at_gate(Path(gate), parties)
    started = time.time()
    data = load_arcticdem(geobox, Path(data_dir), 2)
    return {"dem": data["dem"].values, "datamask": data["datamask"].values, "pid": os.getpid(),
            "started": started, "ended": time.time()}


def wait_at_gate(gate: Path, parties: int, timeout: float = 120.0) -> None:
    """Arrive at a folder shared by the tasks of this machine, then wait until `parties` tasks have arrived."""
    gate.mkdir(parents=True, exist_ok=True)
    (gate / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(gate.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(gate.iterdir()))} of {parties} tasks reached {gate}")
        time.sleep(0.02)


def _tif_bytes(catalog: LocalCatalog) -> int:
    """Bytes of tile reads the COG server's log shows."""
    return sum(r["bytes"] for r in catalog.requests("files") if r["path"].endswith(".tif") and r["method"] == "GET")


def test_darts_scene_tasks_on_ray_share_one_cube_and_fetch_each_chunk_once(
        ray_instance: Any, use_catalog: LocalCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four scene tasks at once, each chunk needed by two or more of them: each chunk is downloaded and committed by
    one task only (the others wait for its claim and find it done), so the store's history holds each chunk once.

    The COG server's bytes cannot show this at 1000² px chunks: decoded blocks are shared between neighbouring chunks
    within one process, so a block on the edge between chunks that two tasks downloaded is read by both, and that
    alone can approach what downloading every chunk twice would cost. The bytes are bounded here all the same.
    """
    load = ray_instance.remote(load_scene)
    settings = {"DARTS_AUX_STAC_URL": use_catalog.stac_url, "DARTS_AUX_ORCHESTRATOR": "inline",
                "DARTS_AUX_RETRY_DELAY_SECONDS": "0.05", "DARTS_AUX_DOWNLOAD_WORKERS": "1",
                "CPL_VSIL_CURL_NON_CACHED": f"/vsicurl/{use_catalog.files_url}"}
    per_scene = {name: GRID.chunks(scene_window(bounds)) for name, bounds in SCENES.items()}
    shared_factor = sum(len(c) for c in per_scene.values()) / len(scene_chunks())
    assert shared_factor > 1.5, "the scenes share chunks"

    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    use_catalog.reset_log()
    scenes = gpd.GeoDataFrame({"scene": list(SCENES)}, geometry=[box(*b) for b in SCENES.values()], crs=3413)
    assert download_arcticdem(scenes, tmp_path / "alone", 2).chunks_fetched == len(scene_chunks())
    baseline = _tif_bytes(use_catalog)
    assert baseline

    use_catalog.reset_log()
    shared = str(tmp_path / "shared")
    gate = str(tmp_path / "gate")
    results = ray_instance.get([load.options(num_cpus=RAY_CPUS / len(SCENES)).remote(settings, shared, bounds, gate,
                                                                                     len(SCENES))
                                for bounds in SCENES.values()])
    assert max(r["started"] for r in results) < min(r["ended"] for r in results), "the four loads overlapped"
    assert len({r["pid"] for r in results}) == len(SCENES), "each scene in its own Ray worker process"
    commits = Counter(row["chunk"] for snapshot in Cube.open(shared, PRODUCT).history()
                      for row in commit_rows(snapshot.metadata or {}))
    assert commits == Counter({str(chunk): 1 for chunk in scene_chunks()}), "each chunk committed by one task, once"
    together = _tif_bytes(use_catalog)
    assert baseline <= together <= 2.0 * baseline, (together, baseline)

    for (name, bounds), result in zip(SCENES.items(), results, strict=True):
        expected = rasterio_mosaic(use_catalog, 2, scene_window(bounds))
        np.testing.assert_array_equal(result["dem"], expected["dem"], err_msg=name)
        np.testing.assert_array_equal(result["datamask"], expected["datamask"], err_msg=name)
    rows = Manifest(cube_paths(Path(shared), PRODUCT).manifest, GRID).latest()
    assert sorted(rows) == scene_chunks() and all(row.snapshot_id for row in rows.values())
