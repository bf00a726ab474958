"""Scale-out: one prefetch on a Dask and on a Ray cluster of 1, 2 and 4 workers over a WAN-shaped link, and DARTS's
pattern (plain Ray tasks, one per scene, each loading what it needs into one shared cube).

    uv run python benchmarks/perf_scaleout.py [--quick]      (or: uv run python benchmarks/run.py --only scaleout)

Every prefetch is the same `download_arcticdem` of an area of several overlapping scenes into a fresh data dir,
through a real Prefect server (`prefect_test_harness` runs `prefect server` in a subprocess), with the catalog's STAC
API and its items' asset hrefs behind `wan.WanProxy` (30 ms RTT, 50 MB/s per direction, shared by every connection):
every request of the workers to the COG server crosses the shaped link. The cluster is started before the run and
each worker has imported darts-aux and Prefect (a warm cluster, as a long-lived one is); the time is the whole flow
run: discovery, downloads, commits. Afterwards the cube is compared pixel for pixel with rasterio's reading of the
tiles' files over the scenes' bounding box. One more Ray run lets the task runner start its own local instance
(DARTS_AUX_RAY_WORKERS, no address): that time includes starting Ray and its workers' imports (and its CPU seconds
miss those workers: they have exited when the run ends).

DARTS's pattern: one Ray task per scene, all at once, each calling `load_arcticdem` on its scene (in-process fills,
no Prefect) into one data dir, over the same link; every scene's pixels are checked against rasterio.

The world is a parameter (`measure(runs, quick, world=...)`): a catalog (root + spec) and the scenes of the area.
The default is the benchmark catalog's one 2 m subtile, with data over 2 × 2 fill chunks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import BENCH_CATALOG, CACHE, CHUNKS_2M, Meter, bench_spec, load_average, use_env, wait_quiet
from wan import WanProxy

WAN_RTT = 0.030
WAN_BANDWIDTH = 50e6
SIZES = (1, 2, 4)
QUICK_SIZES = (1, 2)
DATA = CACHE / "bench-data" / "scaleout"
RAY_CPUS_FOR_SCENES = 2
"""CPUs of the Ray instance the scene tasks share (each task asks for a fraction, so all of them run at once)."""


@dataclass(frozen=True)
class World:
    """What the scale-out runs read: a catalog (built once under `root`, cached) and the scenes of the area."""

    root: Path
    spec: Any
    """A darts_aux.local.CatalogSpec."""
    scenes: dict[str, tuple[float, float, float, float]]
    """Scene footprints in EPSG:3413 (DARTS's optical scenes); they overlap, so chunks are shared among them."""
    resolution: int = 2


def bench_world() -> World:
    """The benchmark catalog: four scenes over its 2 m data (20 km × 20 km), each chunk under two of them."""
    left, bottom, right, top = CHUNKS_2M
    mid_x, mid_y = (left + right) / 2, (bottom + top) / 2
    scenes = {
        "west": (left + 500, bottom + 500, mid_x - 1_500, top - 500),
        "north": (left + 6_000, mid_y + 900, right - 500, top - 1_000),
        "east": (mid_x + 1_100, bottom + 500, right - 500, mid_y + 3_000),
        "south": (left + 2_000, bottom + 900, right - 4_000, mid_y - 2_000),
    }
    return World(BENCH_CATALOG, bench_spec(), scenes)


# -- the world behind a WAN link ---------------------------------------------------------------------------------


def shaped_catalog(world: World, gateway_port: int, via_port: int) -> Any:
    """The world's catalog on `gateway_port`, its items' asset hrefs pointing through the proxy at `via_port`."""
    from darts_aux.local import LocalCatalog

    class ShapedCatalog(LocalCatalog):
        @property
        def files_url(self) -> str:
            """Where the items send readers: the proxy in front of the gateway's file server."""
            return f"http://127.0.0.1:{via_port}/files/"

    return ShapedCatalog(world.root, world.spec, port=gateway_port)


@contextmanager
def world_behind_wan(world: World) -> Iterator[tuple[Any, str]]:
    """The running catalog and the STAC API URL through a WAN proxy (asset hrefs go through the same proxy)."""
    gateway_port = free_port()
    with WanProxy("127.0.0.1", gateway_port, WAN_RTT, WAN_BANDWIDTH) as proxy, \
            shaped_catalog(world, gateway_port, proxy.port) as cat:
        yield cat, f"http://127.0.0.1:{proxy.port}/stac/"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def link_check(stac_url: str) -> dict[str, float]:
    """The shaped link as a client sees it: the mean time of five requests of the STAC API's landing page."""
    import httpx

    with httpx.Client() as client:
        client.get(stac_url)
        started = time.perf_counter()
        for _ in range(5):
            client.get(stac_url)
    return {"request_ms": (time.perf_counter() - started) / 5 * 1e3, "rtt_ms": WAN_RTT * 1e3,
            "bandwidth_mbs": WAN_BANDWIDTH / 1e6}


# -- Ray on this machine only -------------------------------------------------------------------------------------


@contextmanager
def ray_on_loopback() -> Iterator[None]:
    """Ray kept on loopback, quiet and on this interpreter while the runs last (the environment restored after).

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes the node address 127.0.0.1; usage stats off; Ray's dashboard process
    asks cloud metadata addresses which cloud it runs on (usage stats or not), so plain-HTTP requests not for
    loopback go to a closed loopback port; RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 keeps `uv run` from copying the working
    directory into every worker's environment.
    """
    proxy = f"http://127.0.0.1:{free_port()}"
    values = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
              "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "http_proxy": proxy, "HTTP_PROXY": proxy,
              "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    from ray._private import ray_constants

    constants = {"ENABLE_RAY_CLUSTER": False, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": False}
    saved = {name: getattr(ray_constants, name) for name in constants}
    for name, value in constants.items():  # read when ray is imported: it may have been imported already
        setattr(ray_constants, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ray_constants, name, value)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def warm_worker(pause: float) -> int:
    """Import what a fill task imports, then hold the worker for `pause` s (so every worker gets one); its pid."""
    import darts_aux.fill
    import darts_aux.flows.tasks
    import darts_aux.sources.cog
    import darts_aux.sources.stac
    import darts_aux.store  # noqa: F401

    time.sleep(pause)
    return os.getpid()


# -- one prefetch and its check ------------------------------------------------------------------------------------


def scenes_frame(world: World) -> Any:
    """The scenes as a GeoDataFrame (EPSG:4326, as DARTS keeps its footprints)."""
    import geopandas as gpd
    from shapely.geometry import box

    return gpd.GeoDataFrame({"scene": list(world.scenes)}, geometry=[box(*b) for b in world.scenes.values()],
                            crs="EPSG:3413").to_crs(4326)


def scene_chunks(world: World) -> list[Any]:
    """Every chunk some scene touches."""
    from darts_aux.grid import ChunkGrid, bounds_window
    from darts_aux.products import arcticdem

    product = arcticdem(world.resolution)
    grid = ChunkGrid(product)
    return sorted({c for b in world.scenes.values() for c in grid.chunks(bounds_window(product.extent, b))})


def prefetch(world: World, cat: Any, data_dir: Path) -> dict[str, Any]:
    """One `download_arcticdem` of the scenes into a fresh `data_dir`: seconds, chunks fetched, chunks per minute,
    and what crossed the link (the file server's own log: requests and bytes of the tiles)."""
    from darts_aux import download_arcticdem

    shutil.rmtree(data_dir, ignore_errors=True)
    frame = scenes_frame(world)
    wait_quiet()
    cat.reset_log()
    with Meter() as meter:
        report = download_arcticdem(frame, data_dir, world.resolution, progress=False)
    if report.failures or report.chunks_fetched != report.chunks:
        raise AssertionError(f"the prefetch fetched {report.chunks_fetched} of {report.chunks} chunks: "
                             f"{report.failures}")
    return {"seconds": round(meter.wall, 3), "chunks": report.chunks_fetched, "foreign": round(meter.foreign, 3),
            "chunks_per_min": round(report.chunks_fetched / meter.wall * 60, 2), **link_use(cat),
            "cpu_s": round(meter.cpu, 1), "pixels_mb": report.bytes_read / 1e6, "load": load_average()}


def link_use(cat: Any) -> dict[str, Any]:
    """Requests to the file server since its log was reset, and the bytes it sent."""
    files = cat.requests("files")
    megabytes = sum(r["bytes"] or 0 for r in files) / 1e6
    return {"file_requests": len(files), "link_mb": round(megabytes, 2),
            "link_floor_s": round(megabytes * 1e6 / WAN_BANDWIDTH, 2)}


def union_window(world: World) -> Any:
    """The cube window of the scenes' common bounding box."""
    from darts_aux.grid import bounds_window
    from darts_aux.products import arcticdem

    boxes = np.array(list(world.scenes.values()))
    bounds = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    return bounds_window(arcticdem(world.resolution).extent, tuple(float(v) for v in bounds))


def tiles_read_by_rasterio(world: World, cat: Any, window: Any) -> dict[str, np.ndarray]:
    """The oracle: rasterio.merge of the world's tile files over a cube window (dem nodata −9999 → NaN)."""
    import rasterio
    from rasterio.merge import merge

    from darts_aux.grid import window_bounds
    from darts_aux.products import arcticdem

    left, bottom, right, top = bounds = window_bounds(arcticdem(world.resolution).extent, window)
    tiles = [t for t in world.spec.tiles(world.resolution)
             if t.bounds[0] < right and t.bounds[2] > left and t.bounds[1] < top and t.bounds[3] > bottom]
    out = {}
    for asset, nodata in (("dem", -9999.0), ("datamask", 0)):
        sources = [rasterio.open(cat.asset_path(t.item_id, asset)) for t in tiles]
        try:
            band = merge(sources, bounds=bounds, res=world.resolution, nodata=nodata, method="first")[0][0]
        finally:
            for source in sources:
                source.close()
        out[asset] = np.where(band == -9999.0, np.float32(np.nan), band).astype("float32") if asset == "dem" else band
    return out


@dataclass(frozen=True)
class Bench:
    """The running world: its catalog behind the link, the STAC API URL through it, and the oracle (read once)."""

    world: World
    cat: Any
    stac_url: str
    window: Any
    """The cube window of the scenes' common bounding box."""
    expected: dict[str, np.ndarray]
    """rasterio's reading of the tiles over `window`."""

    def expected_in(self, window: Any) -> dict[str, np.ndarray]:
        """The oracle's pixels of a window inside `window`."""
        rows = slice(window.row0 - self.window.row0, window.row1 - self.window.row0)
        cols = slice(window.col0 - self.window.col0, window.col1 - self.window.col0)
        return {name: values[rows, cols] for name, values in self.expected.items()}


def check_cube(bench: Bench, data_dir: Path) -> int:
    """Raise unless the cube equals rasterio's reading of the tiles over the scenes' bounding box; pixels checked."""
    from darts_aux.products import arcticdem
    from darts_aux.store import Cube

    got = Cube.open(data_dir, arcticdem(bench.world.resolution)).read(bench.window)
    for name, values in bench.expected.items():
        if not np.array_equal(got[name], values, equal_nan=True):
            raise AssertionError(f"the cube's {name} differs from rasterio's reading of the tiles")
    return int(np.prod(bench.window.shape))


# -- the clusters ------------------------------------------------------------------------------------------------


def timed_prefetch(bench: Bench, label: str) -> dict[str, Any]:
    """The prefetch into a fresh folder, then the check of its cube; the folder is removed after."""
    data_dir = DATA / f"{label}-{os.getpid()}"
    result = prefetch(bench.world, bench.cat, data_dir)
    result["pixels_checked"] = check_cube(bench, data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"  {label}: {result['chunks']} chunks in {result['seconds']:.1f} s = {result['chunks_per_min']:.1f} "
          f"chunks/min ({result['file_requests']} requests, {result['link_mb']:.0f} MB over the link, "
          f"{result['cpu_s']:.0f} CPU s; others used {result['foreign']:.0%} of the cores, load {result['load']:.1f}); "
          f"cube exact", flush=True)
    return result


def on_dask(bench: Bench, workers: int) -> dict[str, Any]:
    """A LocalCluster of `workers` processes (one thread each) on loopback, warmed, then the timed prefetch."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(warm_worker, 0.0)
        use_env(task_runner="dask", dask_address=cluster.scheduler_address, dask_workers=str(workers))
        return timed_prefetch(bench, f"dask-{workers}")


def on_ray(bench: Bench, workers: int) -> dict[str, Any]:
    """A local Ray instance of `workers` CPUs started here (the runner joins it), warmed, then the timed prefetch."""
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        warm = ray.remote(warm_worker)
        ray.get([warm.options(num_cpus=1).remote(1.0) for _ in range(workers)])
        use_env(task_runner="ray", ray_workers=str(workers))
        return timed_prefetch(bench, f"ray-{workers}")
    finally:
        ray.shutdown()


def on_ray_own_instance(bench: Bench, workers: int) -> dict[str, Any]:
    """The task runner's own local instance (started and stopped by the flow run): includes Ray's start."""
    import ray

    assert not ray.is_initialized()
    use_env(task_runner="ray", ray_workers=str(workers))
    return timed_prefetch(bench, f"ray-{workers}-own-instance")


def sweep(label: str, run: Callable[[Bench, int], dict[str, Any]], bench: Bench, sizes: tuple[int, ...]
          ) -> dict[str, Any]:
    """One engine at every size; throughput relative to the smallest."""
    results = {str(n): run(bench, n) for n in sizes}
    base = results[str(sizes[0])]["chunks_per_min"]
    for result in results.values():
        result["speedup"] = round(result["chunks_per_min"] / base, 2)
    return {"engine": label, "sizes": results}


# -- DARTS's pattern ---------------------------------------------------------------------------------------------


def load_scene(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float], resolution: int,
               start_at: float) -> dict[str, Any]:
    """One DARTS scene task: `load_arcticdem` of its footprint from `start_at` on; pixels and times."""
    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem
    from darts_aux.settings import reload_settings

    os.environ.update(settings)
    reload_settings()
    geobox = GeoBox.from_bbox(bounds, "EPSG:3413", resolution=resolution)
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    data = load_arcticdem(geobox, Path(data_dir), resolution)
    return {"dem": data["dem"].values, "datamask": data["datamask"].values, "started": started,
            "ended": time.time()}


def darts_pattern(bench: Bench) -> dict[str, Any]:
    """All scenes as Ray tasks at once, one shared data dir, over the link: wall time, chunks, exact per scene."""
    import ray

    from darts_aux.grid import bounds_window
    from darts_aux.products import arcticdem

    world, extent = bench.world, arcticdem(bench.world.resolution).extent
    data_dir = DATA / f"darts-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = {"DARTS_AUX_STAC_URL": bench.stac_url, "DARTS_AUX_ORCHESTRATOR": "inline"}
    share = RAY_CPUS_FOR_SCENES / len(world.scenes)
    ray.init(num_cpus=RAY_CPUS_FOR_SCENES, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        warm = ray.remote(warm_worker)
        ray.get([warm.options(num_cpus=share).remote(1.0) for _ in world.scenes])
        load = ray.remote(load_scene)
        wait_quiet()
        bench.cat.reset_log()
        start_at = time.time() + 1.0
        with Meter() as meter:
            results = ray.get([load.options(num_cpus=share).remote(settings, str(data_dir), b, world.resolution,
                                                                   start_at) for b in world.scenes.values()])
    finally:
        ray.shutdown()
    seconds = max(r["ended"] for r in results) - start_at
    for bounds, result in zip(world.scenes.values(), results, strict=True):
        expected = bench.expected_in(bounds_window(extent, bounds))
        if not all(np.array_equal(result[n], expected[n], equal_nan=True) for n in expected):
            raise AssertionError(f"a scene task's pixels differ from rasterio's reading of the tiles: {bounds}")
    shutil.rmtree(data_dir, ignore_errors=True)
    chunks = len(scene_chunks(world))
    out = {"tasks": len(results), "chunks": chunks, "seconds": round(seconds, 3), "foreign": round(meter.foreign, 3),
           "chunks_per_min": round(chunks / seconds * 60, 2), **link_use(bench.cat), "load": load_average()}
    print(f"  DARTS pattern: {len(results)} scene tasks on Ray, {chunks} chunks in {seconds:.1f} s = "
          f"{out['chunks_per_min']:.1f} chunks/min ({out['file_requests']} requests, {out['link_mb']:.0f} MB over "
          f"the link), every scene exact", flush=True)
    return out


# -- all of it -----------------------------------------------------------------------------------------------------


@contextmanager
def prefect_server() -> Iterator[None]:
    """A real Prefect server for the runs (a subprocess; Dask and Ray workers report their task runs to it)."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING",
                      PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    with prefect_test_harness(server_startup_timeout=120):
        yield


def measure(runs: int, quick: bool, world: World | None = None, own_instance: bool = False) -> dict[str, Any]:
    """Dask (not with `quick`) and Ray at each size, DARTS's pattern, and with `own_instance` the runner's own Ray
    instance.

    `runs` is not used: one timed prefetch per size keeps the section near 5 minutes (5.9 measured at load 4-10;
    10.8 while other processes kept 45-89 % of the 2 cores busy). The own-instance run (Ray started and stopped by
    the flow run, 41 s against 22 s on a running instance) is left out of run.py's pass to keep it under 20 minutes.
    """
    world = world or bench_world()
    sizes = QUICK_SIZES if quick else SIZES
    DATA.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"scenes": len(world.scenes), "chunks": len(scene_chunks(world)), "sizes": list(sizes)}
    with world_behind_wan(world) as (cat, stac_url), ray_on_loopback(), prefect_server():
        use_env(stac_url=stac_url, orchestrator="prefect")
        window = union_window(world)
        bench = Bench(world, cat, stac_url, window, tiles_read_by_rasterio(world, cat, window))
        out["link"] = link_check(stac_url)
        print(f"  {out['scenes']} scenes over {out['chunks']} chunks; the link: {out['link']['request_ms']:.0f} ms "
              f"per request", flush=True)
        if not quick:  # a quick pass shows the growth with workers on one engine
            out["dask"] = sweep("dask", on_dask, bench, sizes)
        out["ray"] = sweep("ray", on_ray, bench, sizes)
        if own_instance:
            out["ray_own_instance"] = on_ray_own_instance(bench, sizes[-1])
        out["darts_pattern"] = darts_pattern(bench)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"Ray only, sizes {QUICK_SIZES} instead of {SIZES}")
    parser.add_argument("--own-instance", action="store_true",
                        help="also the Ray task runner with its own instance (started by the flow run)")
    args = parser.parse_args()
    print(json.dumps(measure(1, args.quick, own_instance=args.own_instance), indent=1, default=str))
