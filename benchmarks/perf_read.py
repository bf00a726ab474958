"""Targets 1, 2, 3 and 6 on the 10 km × 10 km ROI at 2 m: warm read, the odc-stac peer, cold fill, fresh process."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    BENCH_CATALOG,
    CACHE,
    REPO,
    ROI_2M,
    Meter,
    Samples,
    bench_spec,
    catalog,
    roi_geobox,
    use_env,
    wait_quiet,
)
from wan import WanProxy

DATA = CACHE / "bench-data"
WAN_RTT = 0.030
WAN_BANDWIDTH = 50e6
PEER_WORKERS = 4
"""Threads odc.stac.load reads with (darts-aux downloads 4 chunks at once by default)."""
PEER_RUNS = 3
"""Timed odc-stac loads per link, after one that warms the server's page cache. Each is a fresh process of 2-5 s;
three per link keep the full pass under 20 min."""

PEER_CHILD = r"""
import json, sys, time
import numpy as np, pystac, odc.stac
from odc.geo.geobox import GeoBox
args = json.loads(sys.argv[1])
items = [pystac.Item.from_dict(d) for d in json.load(open(args["items"]))]
for item in items:
    for asset in item.assets.values():
        asset.href = asset.href.replace(args["origin"], args["via"])
odc.stac.configure_rio(cloud_defaults=True)
geobox = GeoBox.from_bbox(tuple(args["bounds"]), "EPSG:3413", resolution=2)
started = time.perf_counter()
ds = odc.stac.load(items, bands=["dem", "datamask"], geobox=geobox, pool=args["workers"])
seconds = time.perf_counter() - started
if args.get("save"):
    np.save(args["save"], ds.dem.values[0])
print(json.dumps({"seconds": seconds, "shape": list(ds.dem.shape)}))
"""

FAST_CHILD = r"""
import sys, time
started = time.perf_counter()
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
ds = load_arcticdem(GeoBox.from_bbox({bounds}, "EPSG:3413", resolution=2), {data_dir!r}, 2)
heavy = [m for m in ("prefect", "pystac_client", "darts_aux.fill", "darts_aux.sources", "pydantic_settings", "ee",
                   "rasterio", "odc.geo.xr", "filelock") if m in sys.modules]
print("done", time.perf_counter() - started, ",".join(heavy) or "-", flush=True)
"""


def product_and_window() -> tuple[Any, Any]:
    """The 2 m product and the ROI's cube window."""
    from darts_aux.grid import roi_window
    from darts_aux.products import arcticdem

    product = arcticdem(2)
    return product, roi_window(roi_geobox(), product.extent)


# -- target 1: warm read -------------------------------------------------------------------------


class RawFile:
    """The ROI's uncompressed bytes (5000² × 5 B) in one local file, read back two ways.

    `read` returns a new array, as the load does (its pages are touched for the first time, as the load's are);
    `read_into` refills one preallocated buffer (a memcpy from the page cache: the floor of any read).
    """

    def __init__(self, directory: Path, nbytes: int) -> None:
        self.path = directory / "raw-roi.bin"
        self.nbytes = nbytes
        rng = np.random.default_rng(1)
        self.path.write_bytes(rng.integers(0, 255, nbytes, dtype=np.uint8).tobytes())
        self.buffer = np.empty(nbytes, np.uint8)

    def read(self) -> np.ndarray:
        """The file's bytes in a new array."""
        return np.fromfile(self.path, np.uint8)

    def read_into(self) -> None:
        """readinto the preallocated buffer until the file is read."""
        view = memoryview(self.buffer)
        with open(self.path, "rb", buffering=0) as handle:
            pos = 0
            while pos < self.nbytes:
                got = handle.readinto(view[pos:])
                if not got:
                    break
                pos += got


class UncompressedCopy:
    """The cube's zarr chunks under the ROI copied into an icechunk repository without compression (same grid).

    Shows what dropping the codec would buy the warm read: the same window read the way the cube's reader reads it
    (chunk objects fetched through the store, IN_FLIGHT at a time, each chunk's part copied into the result on the
    decode threads), with a copy where the cube's reader decodes.
    """

    def __init__(self, directory: Path, data_dir: Path) -> None:
        import icechunk
        import zarr

        from darts_aux.grid import PixelWindow, roi_window
        from darts_aux.products import arcticdem
        from darts_aux.store import Cube

        product = arcticdem(2)
        window, step = roi_window(roi_geobox(), product.extent), product.read_chunk
        block = PixelWindow(window.row0 // step * step, -(-window.row1 // step) * step,
                            window.col0 // step * step, -(-window.col1 // step) * step)
        pixels = Cube.open(data_dir, product).read(block)
        self.root = directory / "uncompressed-copy"
        shutil.rmtree(self.root, ignore_errors=True)
        self.repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(self.root)))
        session = self.repo.writable_session("main")
        group = zarr.group(store=session.store)
        for variable in product.variables:
            array = group.create_array(variable.name, shape=block.shape, chunks=(step, step), compressors=None,
                                       dtype=variable.dtype, fill_value=variable.fill_value)
            array[:] = pixels[variable.name]
        session.commit("uncompressed copy of the ROI's chunks")
        self.names = [v.name for v in product.variables]
        self.window = PixelWindow(window.row0 - block.row0, window.row1 - block.row0,  # the ROI inside the copy
                                  window.col0 - block.col0, window.col1 - block.col0)

    def read(self) -> dict[str, np.ndarray]:
        """The ROI from the copy: both variables at once, as darts_aux.chunkread reads the cube."""
        import zarr
        from zarr.core.sync import sync

        group = zarr.open_group(self.repo.readonly_session("main").store, mode="r")
        arrays = {name: group[name]._async_array for name in self.names}
        return sync(self._read(arrays))

    async def _read(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        import asyncio

        from zarr.core.buffer import default_buffer_prototype

        from darts_aux import chunkread

        loop, pool, prototype = asyncio.get_running_loop(), chunkread.decode_pool(), default_buffer_prototype()
        limit = asyncio.Semaphore(chunkread.IN_FLIGHT)
        window = self.window

        async def read(array: Any, out: np.ndarray, part: Any) -> None:
            async with limit:
                frame = await (array.store_path / part.key).get(prototype=prototype)
                chunk = frame.as_numpy_array().view(out.dtype).reshape(array.chunks)
                await loop.run_in_executor(pool, out.__setitem__, part.in_output, chunk[part.in_chunk])

        outs = {name: np.empty(window.shape, array.dtype) for name, array in arrays.items()}
        await asyncio.gather(*(read(array, outs[name], part) for name, array in arrays.items()
                               for part in chunkread.chunk_parts(array, window)))
        return outs


class ChunkObjects:
    """The compressed zarr chunks under the ROI: fetched through the cube's icechunk store, and the same bytes from
    plain files (one per chunk), to show what the store's own reads cost against the file system's.
    """

    def __init__(self, directory: Path, data_dir: Path) -> None:
        from zarr.core.sync import sync

        from darts_aux.chunkread import chunk_parts
        from darts_aux.store import Cube

        product, window = product_and_window()
        self.cube = Cube.open(data_dir, product)
        arrays = {name: array._async_array for name, array in self.cube.arrays().items()}
        self.window = window
        self.parts = [(name, array, part) for name, array in arrays.items() for part in chunk_parts(array, window)]
        self.keys = [f"{name}/{part.key}" for name, _, part in self.parts]
        self.root = directory / "chunk-objects"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.paths = []
        for index, frame in enumerate(sync(self._fetch())):
            path = self.root / f"{index}.bin"
            path.write_bytes(frame.to_bytes())
            self.paths.append(path)
        self.nbytes = sum(p.stat().st_size for p in self.paths)

    async def _fetch(self) -> list[Any]:
        import asyncio

        from zarr.core.buffer import default_buffer_prototype

        store, prototype = self.cube.repo.readonly_session("main").store, default_buffer_prototype()
        return await asyncio.gather(*(store.get(key, prototype) for key in self.keys))

    def fetch(self) -> None:
        """Every chunk object through icechunk's store, all at once (as a load asks for them); the buffers icechunk
        hands back are kept as they are, not copied, as a load decodes straight from them."""
        from zarr.core.sync import sync

        sync(self._fetch())

    def read_files(self) -> None:
        """The same bytes from the plain files, one after the other (each freed buffer's memory is reused)."""
        for path in self.paths:
            path.read_bytes()

    def read_files_kept(self) -> list[bytes]:
        """The same bytes from the plain files, every buffer kept until all are read, as `fetch` keeps icechunk's
        (72 buffers alive at once: whether they land in fresh memory depends on the allocator's state)."""
        return [path.read_bytes() for path in self.paths]

    def decode_files(self) -> dict[str, np.ndarray]:
        """The ROI decoded from the plain files by the cube's reader (same decode threads, same decode and copy):
        what the warm read would cost if the chunk objects came from the file system instead of icechunk."""
        from darts_aux.chunkread import decode_into, decode_pool

        outs = {name: np.empty(self.window.shape, array.dtype) for name, array, _ in self.parts}

        def one(path: Path, name: str, array: Any, part: Any) -> None:
            decode_into(np.fromfile(path, np.uint8), tuple(array.chunks), outs[name], part, name)

        futures = [decode_pool().submit(one, path, *job) for path, job in zip(self.paths, self.parts, strict=True)]
        for future in futures:
            future.result()
        return outs


def warm_read(data_dir: Path, runs: int) -> dict[str, Any]:
    """load_arcticdem(persist=True) of the ROI from the filled cube, interleaved with both raw file reads, a read
    of the same window from an uncompressed copy of its chunks, the fetch of its compressed chunk objects through
    icechunk and from plain files, the window decoded from those files, and the lazy load computed."""
    from darts_aux import load_arcticdem

    geobox = roi_geobox()
    raw = RawFile(data_dir, 5000 * 5000 * 5)
    plain = UncompressedCopy(data_dir.parent, data_dir)
    objects = ChunkObjects(data_dir.parent, data_dir)
    load = lambda: load_arcticdem(geobox, data_dir, 2)  # noqa: E731
    lazy = lambda: load_arcticdem(geobox, data_dir, 2, persist=False).compute()  # noqa: E731
    ours = load()
    for other in (lazy(), plain.read(), objects.decode_files()):
        assert all(np.array_equal(ours[name].values, np.asarray(got), equal_nan=True) for name, got in other.items())
    for _ in range(2):
        load(), raw.read(), raw.read_into(), plain.read(), objects.fetch(), objects.read_files(), objects.decode_files()
        objects.read_files_kept(), lazy()
    loads, raws, intos, plains, fetches, files = Samples(), Samples(), Samples(), Samples(), Samples(), Samples()
    decodes, lazies, kept = Samples(), Samples(), Samples()
    for _ in range(runs):
        for action, samples in ((raw.read, raws), (raw.read_into, intos), (plain.read, plains),
                                (objects.fetch, fetches), (objects.read_files, files), (objects.read_files_kept, kept),
                                (objects.decode_files, decodes), (lazy, lazies), (load, loads)):
            wait_quiet()
            with Meter() as meter:
                action()
            samples.add(meter)
    raw.path.unlink()
    shutil.rmtree(plain.root, ignore_errors=True)
    shutil.rmtree(objects.root, ignore_errors=True)
    return {"load": loads.summary(), "raw": raws.summary(), "raw_into": intos.summary(),
            "uncompressed": plains.summary(), "chunk_fetch": fetches.summary(), "chunk_files": files.summary(),
            "chunk_files_kept": kept.summary(),
            "decoded_from_files": decodes.summary(), "lazy_compute": lazies.summary(),
            "chunk_bytes": objects.nbytes, "chunk_objects": len(objects.keys),
            "raw_gbs": raw.nbytes / raws.median / 1e9, "raw_into_gbs": raw.nbytes / intos.median / 1e9}


# -- target 2: the odc-stac peer -------------------------------------------------------------------


def stac_items(stac_url: str, path: Path) -> int:
    """Search the ROI's 2 m items once and keep their JSON for the peer's processes."""
    import pystac_client

    client = pystac_client.Client.open(stac_url)
    search = client.search(collections=["arcticdem-mosaics-v4.1-2m"], bbox=_lonlat_bbox(ROI_2M))
    items = [item.to_dict() for item in search.items()]
    path.write_text(json.dumps(items))
    return len(items)


def _lonlat_bbox(bounds: tuple[float, float, float, float]) -> list[float]:
    """A 3413 box as a lon/lat bbox for a STAC search."""
    from odc.geo.geom import box

    return list(box(*bounds, "EPSG:3413").to_crs("EPSG:4326").boundingbox)


def peer_once(items: Path, origin: str, via: str, save: Path | None = None) -> float:
    """One odc.stac.load of the ROI in a fresh process (cold GDAL caches); the load call's seconds."""
    args = {"items": str(items), "origin": origin, "via": via, "bounds": list(ROI_2M), "workers": PEER_WORKERS,
            "save": str(save) if save else None}
    done = subprocess.run([sys.executable, "-c", PEER_CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"odc.stac.load failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def peer(cat: Any, items: Path, runs: int, shaped: bool, check_against: np.ndarray | None = None) -> dict[str, Any]:
    """odc.stac.load of the ROI straight from the COGs: direct on loopback, or through the WAN proxy."""
    origin = f"127.0.0.1:{cat.port}/"
    samples = Samples()

    def run(via: str) -> None:
        for index in range(runs + 1):  # the first run warms the OS cache of the server's files
            save = Path(tempfile.mkdtemp()) / "peer.npy" if index == 0 and check_against is not None else None
            wait_quiet()
            with Meter() as meter:
                seconds = peer_once(items, origin, via, save)
            meter.wall = seconds  # the load call only, not the child's imports
            if save is not None:
                samples_equal = _same_pixels(np.load(save), check_against)
                shutil.rmtree(save.parent, ignore_errors=True)
                if not samples_equal:
                    raise AssertionError("odc.stac.load and darts-aux disagree on the ROI's pixels")
            if index:
                samples.add(meter)

    if shaped:
        with WanProxy("127.0.0.1", cat.port, WAN_RTT, WAN_BANDWIDTH) as proxy:
            run(f"127.0.0.1:{proxy.port}/")
    else:
        run(origin)
    return samples.summary()


def _same_pixels(peer_dem: np.ndarray, ours: np.ndarray) -> bool:
    """The peer's dem (nodata −9999) equals darts-aux's (NaN) pixel for pixel."""
    peer_nan = np.where(peer_dem == -9999, np.float32(np.nan), peer_dem)
    return peer_nan.shape == ours.shape and bool(np.array_equal(peer_nan, ours, equal_nan=True))


def wan_link_check(cat: Any) -> dict[str, float]:
    """What the proxy really does: request round trip and one stream's bandwidth."""
    import httpx

    url = cat.asset_url("72_46_1_1_2m_v4.1", "dem")
    out: dict[str, float] = {}
    with WanProxy("127.0.0.1", cat.port, WAN_RTT, WAN_BANDWIDTH) as proxy, httpx.Client() as client:
        shaped = url.replace(f":{cat.port}/", f":{proxy.port}/")
        client.get(shaped, headers={"Range": "bytes=0-0"})
        started = time.perf_counter()
        for _ in range(5):
            client.get(shaped, headers={"Range": "bytes=0-0"})
        out["rtt_ms"] = (time.perf_counter() - started) / 5 * 1e3
        started = time.perf_counter()
        body = client.get(shaped, headers={"Range": "bytes=0-49999999"}).content
        out["stream_mbs"] = len(body) / (time.perf_counter() - started) / 1e6
    return out


# -- target 3: cold fill against bare windowed reads ------------------------------------------------


def fill_once(data_dir: Path) -> float:
    """Fill the ROI's chunks into a fresh cube (in-process runner, default 4 download workers); seconds."""
    from darts_aux.api import fill
    from darts_aux.grid import ChunkGrid
    from darts_aux.settings import get_settings

    shutil.rmtree(data_dir, ignore_errors=True)
    product, window = product_and_window()
    started = time.perf_counter()
    report = fill(data_dir, product, window, get_settings())
    seconds = time.perf_counter() - started
    expected = len(ChunkGrid(product).chunks(window))
    if report.chunks_fetched != expected or report.failures:
        raise AssertionError(f"the cold fill fetched {report.chunks_fetched} of {expected} chunks, failures "
                             f"{report.failures}")
    return seconds


def chunks_window() -> Any:
    """The pixel window of the ROI's fill chunks (what a cold fill of the ROI reads and writes)."""
    from darts_aux.grid import ChunkGrid

    product, window = product_and_window()
    return ChunkGrid(product).covering(ChunkGrid(product).chunks(window))


def bare_reads(cat: Any, workers: int) -> float:
    """rasterio windowed reads of the same pixels (dem + datamask) from the same server; seconds.

    The chunks' window is cut into `workers` bands at block-row edges, one windowed read per band and asset, on
    `workers` threads: the pixels of the fill, read as fast as rasterio reads them, no block read twice.
    """
    import rasterio
    from rasterio.windows import Window

    from darts_aux.local.tiles import TileRef
    from darts_aux.settings import get_settings
    from darts_aux.sources.cog import gdal_http_options

    tile = TileRef.parse("72_46_1_1", 2)
    left, _, _, top = tile.bounds
    product, _ = product_and_window()
    e, window = product.extent, chunks_window()
    col0 = round((e.x0 + window.col0 * 2 - left) / 2)
    row0 = round((top - (e.y0 - window.row0 * 2)) / 2)
    height, width = window.shape
    cuts = {round((row0 + k * height / workers) / 512) * 512 for k in range(1, workers)}
    edges = sorted({row0, row0 + height} | {c for c in cuts if row0 < c < row0 + height})
    parts = [(asset, Window(col0, top_row, width, bottom - top_row)) for asset in ("dem", "datamask")
             for top_row, bottom in itertools.pairwise(edges)]
    settings = get_settings()

    def read(part: tuple[str, Any]) -> None:
        asset, band = part
        with rasterio.open(cat.asset_url(tile.item_id, asset)) as src:
            src.read(1, window=band)

    started = time.perf_counter()
    with rasterio.Env(**gdal_http_options(settings.http_timeout_seconds)):
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(read, parts))
    return time.perf_counter() - started


def cold_fill(cat: Any, runs: int) -> dict[str, Any]:
    """Cold fill vs bare reads, interleaved; rates in pixels per second."""
    from darts_aux.settings import get_settings

    workers = get_settings().download_workers
    fills, bares = Samples(), Samples()
    for index in range(runs + 1):
        target = DATA / f"cold-{os.getpid()}-{index}"  # a new folder each time: fills cache open cubes by path
        steps = ((lambda: bare_reads(cat, workers), bares), (lambda target=target: fill_once(target), fills))
        for action, samples in steps:
            wait_quiet()
            with Meter() as meter:
                action()
            if index:
                samples.add(meter)
        shutil.rmtree(target, ignore_errors=True)
    pixels = chunks_window().shape[0] * chunks_window().shape[1]
    return {"pixels": pixels, "fill": fills.summary(), "bare": bares.summary(), "workers": workers,
            "fill_mpx_s": pixels / fills.median / 1e6, "bare_mpx_s": pixels / bares.median / 1e6}


# -- target 6: a fresh process ----------------------------------------------------------------------


def fresh_process(data_dir: Path, runs: int) -> dict[str, Any]:
    """Interpreter start + imports + fast-path load in a new process: until the result, and until exit."""
    code = FAST_CHILD.format(bounds=ROI_2M, data_dir=str(data_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARTS_AUX_", "PREFECT_"))}
    results, exits, inside, heavy = [], [], [], set()
    for index in range(runs + 1):
        wait_quiet()
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        line = proc.stdout.readline() if proc.stdout else ""
        result_at = time.perf_counter() - started
        proc.wait(60)
        exit_at = time.perf_counter() - started
        _, seconds, modules = line.split()
        if index:  # the first run warms the OS cache of the modules
            results.append(result_at), exits.append(exit_at), inside.append(float(seconds))
            heavy.update(m for m in modules.split(",") if m != "-")
    from statistics import median

    return {"result_s": median(results), "exit_s": median(exits), "in_process_s": median(inside),
            "results": [round(x, 3) for x in results], "exits": [round(x, 3) for x in exits],
            "heavy_modules": sorted(heavy)}


# -- all of it --------------------------------------------------------------------------------------


def measure(runs: int, quick: bool) -> dict[str, Any]:
    """Every measurement on the ROI, with the benchmark catalog running."""
    out: dict[str, Any] = {}
    DATA.mkdir(parents=True, exist_ok=True)
    warm_dir = DATA / "warm"
    with catalog(BENCH_CATALOG, bench_spec()) as cat:
        use_env(stac_url=cat.stac_url, orchestrator="inline")
        marker = warm_dir / "arcticdem-2m" / "cube.json"
        grain = product_and_window()[0].fill_chunk
        if not marker.exists() or json.loads(marker.read_text()).get("fill_chunk") != grain:
            fill_once(warm_dir)  # none yet, or one filled on an older chunk grid
        print("  cold fill vs bare reads …", flush=True)
        out["cold_fill"] = cold_fill(cat, runs)
        print("  warm read …", flush=True)
        out["warm_read"] = warm_read(warm_dir, runs * (2 if not quick else 1))
        print("  fresh process …", flush=True)
        out["fresh_process"] = fresh_process(warm_dir, runs)
        from darts_aux import load_arcticdem

        ours = load_arcticdem(roi_geobox(), warm_dir, 2).dem.values
        items = DATA / "items.json"
        out["items"] = stac_items(cat.stac_url, items)
        print("  odc-stac peer, loopback …", flush=True)
        out["peer_direct"] = peer(cat, items, min(runs, PEER_RUNS), shaped=False, check_against=ours)
        print("  odc-stac peer, WAN-shaped …", flush=True)
        out["wan_link"] = wan_link_check(cat)
        out["peer_wan"] = peer(cat, items, min(runs, PEER_RUNS), shaped=True)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(3, True), indent=1))
