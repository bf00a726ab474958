"""Section `campaign`: scenes as DARTS processes them, loaded by 4 concurrent workers into one data dir over a WAN link.

    uv run python benchmarks/campaign.py            # 100 PlanetScope-like scenes (+ Sentinel-2-like ones at 10 m)
    uv run python benchmarks/campaign.py --quick    # 8 + 1
    uv run python benchmarks/run.py --only campaign

Scenes (seeded, clustered so that neighbours overlap, every window inside the real-size world of
`realsize_world.py` built to stage 16: the 2 m quarters and 10 m tiles of supertiles 72_46, 72_47, 73_46 and 73_47,
200 km × 200 km): PlanetScope-like footprints of 25 km × 8 km at a random heading (±25°), loaded at 2 m with
buffer=50; and, when the world's 10 m tiles are built, Sentinel-2-like 109.8 km squares at a random rotation (±5°),
loaded at 10 m with buffer=50. A scene's geobox is its rotated footprint's bounding GeoBox in UTM zone 51N
(EPSG:32651; 3 m pixels for PlanetScope, 10 m for Sentinel-2), as the optical scenes come.

Four worker processes take scenes from one queue and call `load_arcticdem(scene_geobox, data_dir, res, buffer=50)`
into one shared data dir (inline fills), the COGs reached through `wan.WanProxy` (30 ms round trip, 50 MB/s
shared). Measured: the total wall time, what the COG server's log saw (requests, bytes), each worker's peak RSS, the
cube's size on disk, and the over-fetch:

    over-fetch = bytes the COG server sent ÷ union block bytes, where union block bytes = the compressed size of
    the distinct full-resolution COG blocks (dem + datamask) that intersect at least one scene's window (the
    window load_arcticdem reads: the geobox's EPSG:3413 bounding box on the cube grid padded by 50 px), each
    pixel counted in the one tile whose core (the tile without its 100 m buffer, or with it on the world's outer
    edge) holds it: what a reader that fetches each needed block once must transfer.

Pixels of a few scenes are checked against a mosaic of rasterio reads of the same window from the tile files.
The peer (smart-geocubes, `benchmarks/peer_sgc.py` when it exists) loads the same scenes one after the other into
one work dir, as many as fit in its time budget (15 min, 2 min with --quick, BENCH_PEER_BUDGET seconds if set;
standalone, or from run.py with BENCH_PEER=1; BENCH_PEER=0 never) and in the disk (it stops with 5 GB left), and the
output says how many. It stores every tile it touches whole, so the section also prints what any whole-tile loader
must fetch at least: the full-resolution blocks of every tile a scene's window touches.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import queue
import resource
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, Meter
from realsize_world import WORLD, build_world, built_tiles, served, tile_ref

WAN = (0.030, 50e6)
WORKERS = 4
BUFFER = 50
SCENE_CRS = "EPSG:32651"
"""UTM zone 51N: the world (supertile 72_46, ~61.5° N, 123-126° E) lies in it."""
SEED = 7
DATA = CACHE / "campaign-data"
PEER_DATA = CACHE / "campaign-peer"
PEER_BUDGET_S = 900.0
PEER_MIN_FREE_DISK = 5e9
"""The peer stops before a scene when less disk than this is free: it stores every tile it touches whole."""
DEFINITION = (
    "over-fetch = bytes the COG server sent / union block bytes; union block bytes = compressed size of the "
    "distinct full-resolution COG blocks (dem + datamask) intersecting at least one scene's window (its EPSG:3413 "
    "bounding box on the cube grid + 50 px), each pixel counted in the one tile whose core holds it")


@dataclass(frozen=True)
class Kind:
    """A kind of optical scene."""

    name: str
    length: float
    """Along-track size (m)."""
    width: float
    pixel: float
    """Pixel size of the scene's own geobox (m)."""
    resolution: int
    """ArcticDEM cube the scene loads (m)."""
    max_heading: float
    """Largest rotation of the footprint from north (degrees)."""
    spread: float
    """Standard deviation of a scene's centre around its cluster's centre (m)."""


PLANET = Kind("PlanetScope-like 25 × 8 km", 25_000.0, 8_000.0, 3.0, 2, 25.0, 6_000.0)
SENTINEL2 = Kind("Sentinel-2-like 109.8 km", 109_800.0, 109_800.0, 10.0, 10, 5.0, 15_000.0)
"""MGRS tiles are north-up in UTM: a small random turn; the grid convergence of UTM against EPSG:3413 (~12° here)
turns them further on the cube grid."""


@dataclass(frozen=True)
class Scene:
    """One scene: its geobox (a bounding box in SCENE_CRS and a pixel size) and the cube window its load reads."""

    index: int
    kind: str
    resolution: int
    bbox: tuple[float, float, float, float]
    pixel: float
    window: tuple[int, int, int, int]
    """(row0, row1, col0, col1) on the cube grid, buffer included."""

    def geobox(self) -> Any:
        """The scene's GeoBox."""
        from odc.geo.geobox import GeoBox

        return GeoBox.from_bbox(self.bbox, SCENE_CRS, resolution=self.pixel)


# -- scenes --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def world_bounds(resolution: int) -> tuple[float, float, float, float]:
    """EPSG:3413 bounds of the built tiles of a resolution (with their buffers)."""
    tiles = [tile_ref(t, r) for t, r in built_tiles() if r == resolution]
    if not tiles:
        raise RuntimeError(f"no {resolution} m tiles are built; run benchmarks/realsize_world.py build --stage 16")
    return (min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles),
            max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles))


def footprint_bbox(centre: tuple[float, float], kind: Kind, heading: float) -> tuple[float, float, float, float]:
    """Bounding box (in SCENE_CRS) of a length × width rectangle centred on `centre`, turned by `heading` degrees."""
    theta = math.radians(heading)
    half_x = abs(kind.width / 2 * math.cos(theta)) + abs(kind.length / 2 * math.sin(theta))
    half_y = abs(kind.width / 2 * math.sin(theta)) + abs(kind.length / 2 * math.cos(theta))
    x, y = centre
    return (x - half_x, y - half_y, x + half_x, y + half_y)


def scene_window(bbox: tuple[float, float, float, float], kind: Kind) -> tuple[int, int, int, int]:
    """The cube window load_arcticdem reads for a scene (the library's own computation)."""
    from odc.geo.geobox import GeoBox

    from darts_aux.grid import roi_window
    from darts_aux.products import arcticdem

    w = roi_window(GeoBox.from_bbox(bbox, SCENE_CRS, resolution=kind.pixel), arcticdem(kind.resolution).extent,
                   BUFFER)
    return (w.row0, w.row1, w.col0, w.col1)


@functools.lru_cache(maxsize=4)
def world_window(resolution: int) -> Any:
    """The cube window of the built tiles of a resolution."""
    from darts_aux.grid import window_from_bounds
    from darts_aux.products import arcticdem

    return window_from_bounds(arcticdem(resolution).extent, world_bounds(resolution))


def inside(window: tuple[int, int, int, int], resolution: int) -> bool:
    """Whether a cube window lies inside the built tiles of its resolution."""
    world = world_window(resolution)
    return (world.row0 <= window[0] and window[1] <= world.row1 and world.col0 <= window[2]
            and window[3] <= world.col1)


def make_scenes(kind: Kind, count: int, clusters: int, rng: np.random.Generator, first: int = 0) -> list[Scene]:
    """`count` scenes of a kind around `clusters` seeded centres, each redrawn until its window is in the world."""
    from odc.geo.geom import point

    left, bottom, right, top = world_bounds(kind.resolution)
    margin = max(kind.length, kind.width) / 2
    centres = []
    for _ in range(clusters):
        x, y = rng.uniform(left + margin, right - margin), rng.uniform(bottom + margin, top - margin)
        centres.append(point(x, y, "EPSG:3413").to_crs(SCENE_CRS).coords[0])
    scenes: list[Scene] = []
    while len(scenes) < count:
        cx, cy = centres[len(scenes) % clusters]
        centre = (cx + rng.normal(0, kind.spread), cy + rng.normal(0, kind.spread))
        bbox = footprint_bbox(centre, kind, rng.uniform(-kind.max_heading, kind.max_heading))
        window = scene_window(bbox, kind)
        if inside(window, kind.resolution):
            scenes.append(Scene(first + len(scenes), kind.name, kind.resolution, bbox, kind.pixel, window))
    return scenes


def campaign_scenes(quick: bool) -> list[Scene]:
    """The campaign: PlanetScope-like scenes at 2 m, then Sentinel-2-like ones at 10 m when those tiles exist."""
    rng = np.random.default_rng(SEED)
    planet = make_scenes(PLANET, 8 if quick else 100, 2 if quick else 8, rng)
    if not any(r == 10 for _, r in built_tiles()):
        return planet
    return planet + make_scenes(SENTINEL2, 1 if quick else 6, 1 if quick else 2, rng, first=len(planet))


# -- what the scenes need at least: union area and union block bytes -----------------------------------------


def union_pixels(windows: list[tuple[int, int, int, int]]) -> int:
    """Pixels covered by at least one window (exact: the windows' edges cut the plane into cells)."""
    rows = sorted({v for w in windows for v in w[:2]})
    cols = sorted({v for w in windows for v in w[2:]})
    covered = np.zeros((len(rows) - 1, len(cols) - 1), bool)
    for r0, r1, c0, c1 in windows:
        covered[rows.index(r0):rows.index(r1), cols.index(c0):cols.index(c1)] = True
    heights, widths = np.diff(rows), np.diff(cols)
    return int((covered * heights[:, None] * widths[None, :]).sum())


def tile_block_sizes(path: Path) -> np.ndarray:
    """Compressed size of every full-resolution block of a COG, as a (block rows, block cols) array."""
    import rasterio

    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        ny, nx = -(-src.height // bh), -(-src.width // bw)
        return np.array([[int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0) for x in range(nx)]
                         for y in range(ny)], np.int64)


def assigned_region(tile: Any, others: list[Any]) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) in the tile's pixels it answers for: its core, plus its buffer where no other
    tile of the world lies beyond that edge."""
    rows, cols = tile.shape
    b = round(tile.buffer / tile.resolution)
    x0, y0, x1, y1 = tile.nominal_bounds
    west = any(o.nominal_bounds[2] == x0 and o.nominal_bounds[1] == y0 for o in others)
    east = any(o.nominal_bounds[0] == x1 and o.nominal_bounds[1] == y0 for o in others)
    south = any(o.nominal_bounds[3] == y0 and o.nominal_bounds[0] == x0 for o in others)
    north = any(o.nominal_bounds[1] == y1 and o.nominal_bounds[0] == x0 for o in others)
    return (b if north else 0, rows - b if south else rows, b if west else 0, cols - b if east else cols)


def union_block_bytes(scenes: list[Scene], resolution: int) -> dict[str, Any]:
    """Union block bytes of the scenes of one resolution (see DEFINITION), per asset, and the union's pixels; also
    the tiles any scene's window touches and their full-resolution block bytes: what a loader that reads whole
    tiles (as smart-geocubes does) must transfer at least."""
    from realsize_world import grid_offset

    windows = [s.window for s in scenes if s.resolution == resolution]
    tiles = [tile_ref(t, r) for t, r in built_tiles() if r == resolution]
    out: dict[str, Any] = {"union_pixels": union_pixels(windows), "dem": 0, "datamask": 0, "blocks": 0,
                           "tiles_touched": 0, "touched_tile_bytes": 0}
    for tile in tiles:
        off_r, off_c = grid_offset(tile)
        a_r0, a_r1, a_c0, a_c1 = assigned_region(tile, [t for t in tiles if t != tile])
        rows, cols = tile.shape
        touched = any(r0 - off_r < rows and r1 - off_r > 0 and c0 - off_c < cols and c1 - off_c > 0
                      for r0, r1, c0, c1 in windows)
        needed: set[tuple[int, int]] = set()
        for r0, r1, c0, c1 in windows:
            rr0, rr1 = max(r0 - off_r, a_r0), min(r1 - off_r, a_r1)
            cc0, cc1 = max(c0 - off_c, a_c0), min(c1 - off_c, a_c1)
            if rr0 < rr1 and cc0 < cc1:
                needed.update((y, x) for y in range(rr0 // 512, (rr1 - 1) // 512 + 1)
                              for x in range(cc0 // 512, (cc1 - 1) // 512 + 1))
        out["blocks"] += len(needed)
        out["tiles_touched"] += touched
        for asset in ("dem", "datamask"):
            sizes = tile_block_sizes(WORLD / tile.asset_relpath(asset))
            out[asset] += int(sum(sizes[y, x] for y, x in needed))
            out["touched_tile_bytes"] += int(sizes.sum()) if touched else 0
    out["bytes"] = out["dem"] + out["datamask"]
    return out


# -- the workers -----------------------------------------------------------------------------------------------


def worker(index: int, env: dict[str, str], data_dir: str, jobs: Any, results: Any) -> None:
    """A worker process: load scenes from the queue until it is empty; report each, then its peak RSS."""
    os.environ.update(env)
    from darts_aux import load_arcticdem

    while True:
        try:
            scene: Scene = jobs.get_nowait()
        except queue.Empty:
            break
        started = time.perf_counter()
        ds = load_arcticdem(scene.geobox(), data_dir, scene.resolution, buffer=BUFFER)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        results.put({"worker": index, "scene": scene.index, "seconds": round(seconds, 3),
                     "shape": list(ds.dem.shape), "valid": int(ds.datamask.values.sum())})
        del ds
    results.put({"worker": index, "done": True, "max_rss_mb": round(peak_rss_mb(), 1)})


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM of /proc/self/status; ru_maxrss elsewhere).

    Linux keeps ru_maxrss across fork and exec, so a spawned worker's ru_maxrss starts at its parent's peak (11 GB
    after the manifest section of a full run): VmHWM belongs to the worker's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_workers(scenes: list[Scene], cat: Any, data_dir: Path) -> dict[str, Any]:
    """Four worker processes over one queue of scenes; per-scene results, per-worker peak RSS, total wall."""
    ctx = multiprocessing.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    for scene in scenes:
        jobs.put(scene)
    env = {"DARTS_AUX_STAC_URL": cat.stac_url, "DARTS_AUX_ORCHESTRATOR": "inline"}
    time.sleep(0.5)  # the queue's feeder thread has handed every scene over
    procs = [ctx.Process(target=worker, args=(i, env, str(data_dir), jobs, results)) for i in range(WORKERS)]
    with Meter() as meter:
        for proc in procs:
            proc.start()
        loaded, rss, done = [], {}, 0
        while done < WORKERS:
            try:
                message = results.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("the campaign's workers died before finishing (their output is above)") from None
                continue
            if message.get("done"):
                rss[message["worker"]] = message["max_rss_mb"]
                done += 1
            else:
                loaded.append(message)
        for proc in procs:
            proc.join()
    if len(loaded) != len(scenes):
        raise RuntimeError(f"the workers loaded {len(loaded)} of {len(scenes)} scenes")
    return {"wall_s": round(meter.wall, 1), "foreign": round(meter.foreign, 3), "loads": loaded,
            "max_rss_mb": [rss[i] for i in range(WORKERS)]}


# -- checking pixels ------------------------------------------------------------------------------------------


def mosaic_oracle(scene: Scene) -> dict[str, np.ndarray]:
    """The scene's window read by rasterio from every tile file it touches, valid pixels of any tile kept (the
    world's tiles agree where they overlap)."""
    import rasterio
    from rasterio.windows import Window
    from realsize_world import grid_offset

    r0, r1, c0, c1 = scene.window
    dem = np.full((r1 - r0, c1 - c0), np.nan, np.float32)
    mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
    for tile_id, res in built_tiles():
        if res != scene.resolution:
            continue
        tile = tile_ref(tile_id, res)
        off_r, off_c = grid_offset(tile)
        rows, cols = tile.shape
        tr0, tr1 = max(r0 - off_r, 0), min(r1 - off_r, rows)
        tc0, tc1 = max(c0 - off_c, 0), min(c1 - off_c, cols)
        if tr0 >= tr1 or tc0 >= tc1:
            continue
        window = Window(tc0, tr0, tc1 - tc0, tr1 - tr0)
        with rasterio.open(WORLD / tile.asset_relpath("dem")) as src:
            part = src.read(1, window=window)
        with rasterio.open(WORLD / tile.asset_relpath("datamask")) as src:
            part_mask = src.read(1, window=window)
        out = (slice(tr0 + off_r - r0, tr1 + off_r - r0), slice(tc0 + off_c - c0, tc1 + off_c - c0))
        take = part_mask > 0
        dem[out][take] = part[take]
        mask[out][take] = 1
    return {"dem": dem, "datamask": mask}


def check_pixels(scenes: list[Scene], data_dir: Path) -> list[int]:
    """Load a few scenes offline from the filled cube and compare them with the mosaic oracle; their indices."""
    from darts_aux import load_arcticdem

    chosen = [scenes[0], scenes[len(scenes) // 2], scenes[-1]]
    for scene in chosen:
        ds = load_arcticdem(scene.geobox(), data_dir, scene.resolution, buffer=BUFFER,  # type: ignore[arg-type]
                            offline=True)
        expected = mosaic_oracle(scene)
        for name in ("dem", "datamask"):
            if not np.array_equal(ds[name].values, expected[name], equal_nan=True):
                raise AssertionError(f"scene {scene.index}: the cube's {name} differs from a rasterio read of the "
                                     f"tiles")
    return [s.index for s in chosen]


# -- the peer -------------------------------------------------------------------------------------------------


def run_peer(scenes: list[Scene], cat: Any, budget: float) -> dict[str, Any]:
    """smart-geocubes on the same scenes, one after the other into one work dir, while the budget lasts."""
    try:
        import peer_sgc  # type: ignore[import-not-found]
    except ImportError:
        return {"available": False}
    if budget <= 0:
        return {"available": True, "skipped": "no time budget (BENCH_PEER=1 runs it from run.py)"}
    from darts_aux.grid import PixelWindow, window_bounds
    from darts_aux.products import arcticdem

    shutil.rmtree(PEER_DATA, ignore_errors=True)
    cat.reset_log()
    done: list[dict[str, Any]] = []
    stopped = "every scene loaded"
    started = time.perf_counter()
    for scene in scenes:
        elapsed = time.perf_counter() - started
        per_scene = elapsed / len(done) if done else 0.0
        if done and elapsed + per_scene > budget:
            stopped = f"time budget of {budget:.0f} s"
            break
        PEER_DATA.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(PEER_DATA).free < PEER_MIN_FREE_DISK:
            stopped = f"less than {PEER_MIN_FREE_DISK / 1e9:.0f} GB of disk left"
            break
        bounds = window_bounds(arcticdem(scene.resolution).extent, PixelWindow(*scene.window))
        out = PEER_DATA / f"out-{scene.index}"
        result = peer_sgc.peer_load(cat.stac_url, bounds, scene.resolution, PEER_DATA / "work", out, warm_runs=0)
        done.append({"scene": scene.index, "seconds": result.get("seconds", result.get("load_seconds"))})
        shutil.rmtree(out, ignore_errors=True)
        print(f"    peer: scene {scene.index} in {done[-1]['seconds']:.1f} s "
              f"({time.perf_counter() - started:.0f} s so far)", flush=True)
    wall = time.perf_counter() - started
    files = cat.requests("files")
    work_bytes = cube_bytes(PEER_DATA / "work") if (PEER_DATA / "work").exists() else 0
    shutil.rmtree(PEER_DATA, ignore_errors=True)
    return {"available": True, "scenes": len(done), "of": len(scenes), "budget_s": budget, "stopped": stopped,
            "wall_s": round(wall, 1), "loads": done, "cube_bytes": work_bytes,
            "requests": len(files), "bytes": sum(r["bytes"] for r in files)}


# -- the section ----------------------------------------------------------------------------------------------


def cube_bytes(data_dir: Path) -> int:
    """Bytes of every file under the data dir."""
    return sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())


def peer_budget(quick: bool, standalone: bool) -> float:
    """Seconds the peer may take: BENCH_PEER=0 none; =1, or standalone, 15 min (2 min quick) unless
    BENCH_PEER_BUDGET gives the seconds; from run.py none, as a cold smart-geocubes campaign would take longer than
    the whole run."""
    choice = os.environ.get("BENCH_PEER", "")
    if choice == "0" or (not standalone and choice != "1"):
        return 0.0
    if os.environ.get("BENCH_PEER_BUDGET"):
        return float(os.environ["BENCH_PEER_BUDGET"])
    return 120.0 if quick else PEER_BUDGET_S


def measure(runs: int, quick: bool, standalone: bool = False) -> dict[str, Any]:
    """The campaign over the WAN link; `runs` is unused (one campaign is one sample)."""
    del runs
    build_world(WORLD, "16", progress=lambda line: print(line, flush=True))
    scenes = campaign_scenes(quick)
    resolutions = sorted({s.resolution for s in scenes})
    union = {res: union_block_bytes(scenes, res) for res in resolutions}
    out: dict[str, Any] = {"definition": DEFINITION, "scenes": [asdict(s) for s in scenes],
                           "kinds": {k.name: sum(s.kind == k.name for s in scenes) for k in (PLANET, SENTINEL2)},
                           "union": {str(r): u for r, u in union.items()}, "workers": WORKERS,
                           "wan": {"rtt_s": WAN[0], "bandwidth": WAN[1]}, "load_average_start": os.getloadavg()[0]}
    shutil.rmtree(DATA, ignore_errors=True)
    print(f"  {DEFINITION}", flush=True)
    print(f"  {len(scenes)} scenes ({', '.join(f'{n} {k}' for k, n in out['kinds'].items() if n)}) by "
          f"{WORKERS} workers over the WAN link …", flush=True)
    with served(WAN) as cat:
        cat.reset_log()
        out["run"] = run_workers(scenes, cat, DATA)
        time.sleep(0.3)
        files = cat.requests("files")
        out["requests"] = len(files)
        out["bytes"] = sum(r["bytes"] for r in files)
        out["bytes_by_resolution"] = {str(res): sum(r["bytes"] for r in files if f"/{res}m/" in r["path"])
                                      for res in resolutions}
        out["stac_requests"] = len(cat.requests("stac"))
        out["load_average_end"] = os.getloadavg()[0]
        out["cube_bytes"] = cube_bytes(DATA)
        print("  checking pixels of three scenes …", flush=True)
        out["pixels_checked"] = check_pixels(scenes, DATA)
        shutil.rmtree(DATA, ignore_errors=True)  # the peer's whole tiles need the disk
        out["peer"] = run_peer(scenes, cat, peer_budget(quick, standalone))
    out["over_fetch"] = out["bytes"] / sum(u["bytes"] for u in union.values())
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool | None]]:
    """The section's rows for run.py's table."""
    run = r["run"]
    union = sum(u["bytes"] for u in r["union"].values())
    scenes = len(r["scenes"])
    per_scene = statistics.median(x["seconds"] for x in run["loads"])
    out: list[tuple[str, str, str, str, str, bool | None]] = [
        (f"C campaign: {scenes} scenes, {r['workers']} workers, one data dir, over WAN",
         f"{run['wall_s']:.0f} s", f"median scene {per_scene:.1f} s; cube {r['cube_bytes'] / 1e9:.1f} GB on disk",
         f"peak RSS per worker {min(run['max_rss_mb']):.0f}–{max(run['max_rss_mb']):.0f} MB", "(printed)", None),
        ("C campaign over-fetch (bytes sent / union block bytes)",
         f"{r['bytes'] / 1e9:.2f} GB in {r['requests']:,} requests", f"union block bytes {union / 1e9:.2f} GB",
         f"{r['over_fetch']:.2f}×", "≤ 1.3×", r["over_fetch"] <= 1.3),
    ]
    touched = sum(u.get("touched_tile_bytes", 0) for u in r["union"].values())
    if touched:
        tiles = ", ".join(f"{u['tiles_touched']} at {res} m" for res, u in r["union"].items())
        out.append(("C what a whole-tile loader fetches at least: every touched tile's full-resolution blocks",
                    f"{r['bytes'] / 1e9:.2f} GB", f"{touched / 1e9:.2f} GB ({tiles} tiles touched)",
                    f"{touched / r['bytes']:.2f}× fewer", "(printed)", None))
    peer = r.get("peer", {})
    if peer.get("available") and peer.get("scenes") and peer["scenes"] == peer["of"]:
        wall, sent = peer["wall_s"] / run["wall_s"], peer["bytes"] / r["bytes"]
        out.append(("C smart-geocubes on the same scenes (one process), wall time", f"{run['wall_s']:.0f} s",
                    f"peer {peer['wall_s']:.0f} s", f"{wall:.1f}× less", "≥ 10× less", wall >= 10))
        out.append(("C smart-geocubes on the same scenes, bytes the COG server sent", f"{r['bytes'] / 1e9:.2f} GB",
                    f"peer {peer['bytes'] / 1e9:.2f} GB in {peer['requests']:,} requests", f"{sent:.1f}× fewer",
                    "≥ 5× fewer", sent >= 5))
    elif peer.get("available") and peer.get("scenes"):
        subset = f"{peer['scenes']} of {peer['of']} scenes (a subset: {peer.get('stopped', 'time budget')})"
        peer_scene = statistics.median(x["seconds"] for x in peer["loads"])
        hours = peer_scene * peer["of"] / 3600
        out.append((f"C smart-geocubes on the same scenes, one at a time ({subset})", f"{per_scene:.1f} s/scene",
                    f"peer {peer_scene:.1f} s/scene, {peer['bytes'] / 1e9:.2f} GB (all {peer['of']}: ~{hours:.1f} h)",
                    "—", "(printed)", None))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the campaign standalone and print its figures."""
    args = sys.argv[1:] if argv is None else argv
    result = measure(3, "--quick" in args, standalone=True)
    path = Path(__file__).resolve().parent / "campaign_results.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    for row in rows(result):
        print(" | ".join(str(v) for v in row))
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
