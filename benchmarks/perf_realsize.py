"""Section `realsize`: the 10 km ROI at 2 m read cold from a real-size tile, over a WAN-shaped link and on loopback.

The tile is 72_46_1_1 of the real-size world (`realsize_world.py`, 25,100² px, PGC's COG layout, ~1.6 GB dem); the
ROI is `common.ROI_2M` (5000² px in the tile's core, aligned to neither 1000, 2000 nor 5000 px chunk grids). Per
link (WAN: `wan.WanProxy`, 30 ms round trip, 50 MB/s shared, in front of the COG server; loopback: none), runs
alternate so noise hits each loader alike:

- darts-aux: `load_arcticdem(geobox, fresh data_dir, 2)` in a fresh process (the call's seconds; inline fills,
  the catalog's STAC API), its pixels checked against the oracle, a rasterio read of the same window from the
  same files on disk;
- the bound: a bare rasterio windowed read of exactly the ROI's window, dem and datamask on two threads, in a
  fresh process (cold GDAL caches, `GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR` and odc-stac's cloud defaults);
- the peer, smart-geocubes, when `benchmarks/peer_sgc.py` exists (`peer_load(stac_url, bounds, resolution,
  workdir, out_dir, warm_runs=...)`): one cold run over WAN in the full pass (its warm runs follow it in the same
  process) and one on loopback, none in `--quick` (a cold smart-geocubes load reads whole tiles and takes minutes);
  BENCH_PEER=1 runs it in `--quick` too, BENCH_PEER=all as many times as darts-aux, BENCH_PEER=0 never.

Requests and bytes per run come from the COG server's own request log. "Block bytes" is the sum of the compressed
sizes of the full-resolution COG blocks that intersect the ROI's window, dem and datamask (from the TIFF tags
GDAL exposes): what any block-granular reader must transfer at least. The warm load is the same ROI from the cube
the cold load filled, in this (warm) process, median of several runs.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from common import CACHE, REPO, ROI_2M, Meter, Samples, roi_geobox, wait_quiet
from realsize_world import ROI_TILE, WORLD, build_world, grid_offset, served, tile_ref

WAN = (0.030, 50e6)
"""Round trip (s) and shared bandwidth (bytes/s) of the WAN-shaped link."""
DATA = CACHE / "realsize-data"
ASSETS = ("dem", "datamask")

DARTS_CHILD = r"""
import json, sys, time
started = time.perf_counter()
import numpy as np
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
args = json.loads(sys.argv[1])
geobox = GeoBox.from_bbox(tuple(args["bounds"]), "EPSG:3413", resolution=2)
imported = time.perf_counter()
ds = load_arcticdem(geobox, args["data_dir"], 2)
seconds = time.perf_counter() - imported
np.save(args["out"] + "/dem.npy", ds.dem.values)
np.save(args["out"] + "/datamask.npy", ds.datamask.values)
print(json.dumps({"seconds": seconds, "imports": imported - started,
                  "max_rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
                                / 1024}))  # VmHWM: ru_maxrss carries the parent's peak over fork and exec
"""

BARE_CHILD = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import rasterio
from rasterio.windows import Window
args = json.loads(sys.argv[1])
env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "10", "GDAL_HTTP_RETRY_DELAY": "0.5"}
window = Window(*args["window"])

def read(href):
    with rasterio.Env(**env), rasterio.open(href) as src:
        return src.read(1, window=window)

started = time.perf_counter()
with ThreadPoolExecutor(2) as pool:
    dem, mask = pool.map(read, args["hrefs"])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "shape": list(dem.shape), "valid": int(mask.sum())}))
"""


# -- where the ROI lies in the tile, and what its blocks weigh -----------------------------------------


def tile_window() -> tuple[int, int, int, int]:
    """(col_off, row_off, width, height) of the ROI in tile ROI_TILE's pixels (the window load_arcticdem reads)."""
    from darts_aux.grid import roi_window
    from darts_aux.products import arcticdem

    window = roi_window(roi_geobox(), arcticdem(2).extent)
    row_off, col_off = grid_offset(tile_ref(ROI_TILE, 2))
    return window.col0 - col_off, window.row0 - row_off, window.shape[1], window.shape[0]


def block_bytes(path: Path, window: tuple[int, int, int, int]) -> tuple[int, int]:
    """(compressed bytes, count) of the full-resolution blocks of a COG that intersect a window."""
    import rasterio

    col, row, width, height = window
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        blocks = [(x, y) for y in range(row // bh, (row + height - 1) // bh + 1)
                  for x in range(col // bw, (col + width - 1) // bw + 1)]
        sizes = [int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0) for x, y in blocks]
    return sum(sizes), len(blocks)


def oracle(window: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """The ROI read by rasterio from the tile files on disk: dem (−9999 as NaN) and datamask."""
    import rasterio
    from rasterio.windows import Window

    out = {}
    for asset in ASSETS:
        with rasterio.open(WORLD / tile_ref(ROI_TILE, 2).asset_relpath(asset)) as src:
            out[asset] = src.read(1, window=Window(*window))
    out["dem"] = np.where(out["dem"] == -9999, np.float32(np.nan), out["dem"])
    return out


def same_pixels(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    """Both variables equal pixel for pixel (NaN equal to NaN)."""
    return all(got[a].shape == expected[a].shape and np.array_equal(got[a], expected[a], equal_nan=True)
               for a in ASSETS)


# -- one run of each loader --------------------------------------------------------------------------------


def served_by(cat: Any, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run an action with an empty request log; its result plus the requests and bytes the servers saw."""
    cat.reset_log()
    wait_quiet()
    load = os.getloadavg()[0]
    with Meter() as meter:
        result = action()
    time.sleep(0.2)  # the gateway writes a request's log line as its last byte leaves
    files = cat.requests("files")
    result.update({"requests": len(files), "bytes": sum(r["bytes"] for r in files),
                   "stac_requests": len(cat.requests("stac")), "wall": round(meter.wall, 3),
                   "foreign": round(meter.foreign, 3), "load_average": round(load, 2)})
    return result


def child(code: str, args: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a Python snippet in a fresh process; its last stdout line as JSON."""
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                          timeout=900, cwd=REPO, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"a benchmark child failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def darts_env(cat: Any) -> dict[str, str]:
    """The environment of a darts-aux child: this catalog, inline fills, no Prefect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARTS_AUX_", "PREFECT_"))}
    env.update({"DARTS_AUX_STAC_URL": cat.stac_url, "DARTS_AUX_ORCHESTRATOR": "inline"})
    return env


def darts_cold(cat: Any, data_dir: Path, expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """load_arcticdem into a fresh data dir in a fresh process; its pixels checked against the oracle."""
    shutil.rmtree(data_dir, ignore_errors=True)
    out = data_dir.with_name(data_dir.name + "-out")
    out.mkdir(parents=True, exist_ok=True)
    args = {"bounds": list(ROI_2M), "data_dir": str(data_dir), "out": str(out)}
    result = served_by(cat, lambda: child(DARTS_CHILD, args, darts_env(cat)))
    got = {a: np.load(out / f"{a}.npy") for a in ASSETS}
    shutil.rmtree(out, ignore_errors=True)
    result["pixels_equal"] = same_pixels(got, expected)
    if not result["pixels_equal"]:
        raise AssertionError("darts-aux's load of the ROI differs from a rasterio read of the same window")
    result["cube_bytes"] = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
    return result


def bare_read(cat: Any, window: tuple[int, int, int, int]) -> dict[str, Any]:
    """The lower bound: rasterio reads exactly the ROI's window of both assets, in a fresh process."""
    hrefs = [cat.files_url + tile_ref(ROI_TILE, 2).asset_relpath(a) for a in ASSETS]
    return served_by(cat, lambda: child(BARE_CHILD, {"hrefs": hrefs, "window": list(window)}))


def peer_module() -> ModuleType | None:
    """benchmarks/peer_sgc.py when it exists (the smart-geocubes peer), else None."""
    try:
        return importlib.import_module("peer_sgc")
    except ImportError:
        return None


def peer_runs_wanted(quick: bool, cold_runs: int) -> int:
    """How many cold peer runs to make over WAN: BENCH_PEER=0 none, =1 one, =all as many as darts-aux's; unset,
    none in quick mode and one in a full pass. A cold smart-geocubes load of a real-size tile takes 1–1.5 min over
    the link, 20× darts-aux's, so one run shows the ratio and a second would add 1.5 min to the 20-minute pass."""
    choice = os.environ.get("BENCH_PEER", "")
    if choice == "0" or (quick and choice not in ("1", "all")):
        return 0
    return cold_runs if choice == "all" else 1


def peer_cold(peer: ModuleType, cat: Any, workdir: Path, darts_dir: Path, warm_runs: int) -> dict[str, Any]:
    """The peer's load of the ROI into a fresh work dir; its pixels compared with darts-aux's load of the same ROI
    (`peer_sgc.compare`, on the coordinates both hold) when the module offers it."""
    shutil.rmtree(workdir, ignore_errors=True)
    out = workdir.with_name(workdir.name + "-out")
    out.mkdir(parents=True, exist_ok=True)
    result = served_by(cat, lambda: dict(peer.peer_load(cat.stac_url, ROI_2M, 2, workdir, out,
                                                         warm_runs=warm_runs)))
    result.setdefault("seconds", result.get("load_seconds"))
    if hasattr(peer, "compare") and (out / "dem.npy").exists():
        from darts_aux import load_arcticdem

        result["pixels"] = peer.compare(out, load_arcticdem(roi_geobox(), darts_dir, 2, offline=True))
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- the link itself ------------------------------------------------------------------------------------------


def link_check(cat: Any) -> dict[str, float]:
    """What the link really does: a small request's round trip, and one stream's rate over 50 MB."""
    import httpx

    url = cat.files_url + tile_ref(ROI_TILE, 2).asset_relpath("dem")
    with httpx.Client() as client:
        client.get(url, headers={"Range": "bytes=0-0"})
        started = time.perf_counter()
        for _ in range(5):
            client.get(url, headers={"Range": "bytes=0-0"})
        rtt = (time.perf_counter() - started) / 5
        started = time.perf_counter()
        body = client.get(url, headers={"Range": "bytes=0-49999999"}).content
        rate = len(body) / (time.perf_counter() - started)
    return {"rtt_ms": round(rtt * 1e3, 1), "stream_mbs": round(rate / 1e6, 1)}


# -- the section ---------------------------------------------------------------------------------------------


def warm_page_cache() -> None:
    """Read the tile's files once, so the server reads from memory in every run (as a CDN's would be)."""
    for asset in ASSETS:
        with open(WORLD / tile_ref(ROI_TILE, 2).asset_relpath(asset), "rb") as handle:
            while handle.read(64 << 20):
                pass


def run_link(name: str, wan: tuple[float, float] | None, runs: int, window: tuple[int, int, int, int],
             expected: dict[str, np.ndarray], peer: ModuleType | None = None, peer_runs: int = 0,
             peer_warm_runs: int = 0) -> dict[str, Any]:
    """Cold runs on one link, alternating darts-aux, the bare read and (its first `peer_runs` rounds) the peer."""
    out: dict[str, Any] = {"darts": [], "bare": [], "peer": []}
    with served(wan) as cat:
        out["link"] = link_check(cat)
        for index in range(runs):
            darts_dir = DATA / f"{name}-{index}"
            out["darts"].append(darts_cold(cat, darts_dir, expected))
            out["bare"].append(bare_read(cat, window))
            if peer is not None and index < peer_runs:
                warm = peer_warm_runs if index == peer_runs - 1 else 0
                out["peer"].append(peer_cold(peer, cat, DATA / f"peer-{name}-{index}", darts_dir, warm))
            if index < runs - 1:
                shutil.rmtree(darts_dir, ignore_errors=True)
        for key in ("darts", "bare", "peer"):
            if out[key]:
                out[f"{key}_median_s"] = statistics.median(r["seconds"] for r in out[key])
    return out


def warm_load(data_dir: Path, runs: int, expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """load_arcticdem of the ROI from the filled cube in this process (no network: the cube settles it)."""
    from darts_aux import load_arcticdem

    geobox = roi_geobox()
    ds = load_arcticdem(geobox, data_dir, 2)
    if not same_pixels({a: ds[a].values for a in ASSETS}, expected):
        raise AssertionError("the warm load differs from a rasterio read of the same window")
    samples = Samples()
    load = lambda: load_arcticdem(geobox, data_dir, 2)  # noqa: E731
    load()
    for _ in range(runs):
        wait_quiet()
        with Meter() as meter:
            load()
        samples.add(meter)
    return {**samples.summary(), "load_average": round(os.getloadavg()[0], 2)}


def measure(runs: int, quick: bool) -> dict[str, Any]:
    """The whole section; `runs` 3 (quick) or 5 (full) as run.py passes it."""
    cold_runs = 1 if quick else 2
    warm_runs = 5 if quick else 10
    record = build_world(WORLD, "1", progress=lambda line: print(line, flush=True))
    warm_page_cache()
    DATA.mkdir(parents=True, exist_ok=True)
    window = tile_window()
    tile = tile_ref(ROI_TILE, 2)
    blocks = {a: block_bytes(WORLD / tile.asset_relpath(a), window) for a in ASSETS}
    expected = oracle(window)
    peer = peer_module()
    peer_runs = peer_runs_wanted(quick, cold_runs) if peer is not None else 0
    out: dict[str, Any] = {
        "tile": tile.item_id, "window": list(window), "tile_record": record[tile.item_id],
        "block_bytes": sum(b for b, _ in blocks.values()), "blocks": {a: n for a, (_, n) in blocks.items()},
        "block_bytes_per_asset": {a: b for a, (b, _) in blocks.items()}, "peer_runs": peer_runs,
        "cold_runs": cold_runs, "wan": {"rtt_s": WAN[0], "bandwidth": WAN[1]},
    }
    print("  WAN-shaped link: darts-aux, bare read" + (", smart-geocubes" if peer_runs else "") + " …", flush=True)
    out["over_wan"] = run_link("wan", WAN, cold_runs, window, expected, peer, peer_runs, warm_runs)
    print("  loopback: darts-aux, bare read" + (", smart-geocubes (once)" if peer_runs else "") + " …", flush=True)
    out["loopback"] = run_link("loopback", None, cold_runs, window, expected, peer, min(peer_runs, 1))
    print("  warm load …", flush=True)
    out["warm"] = warm_load(DATA / f"loopback-{cold_runs - 1}", warm_runs, expected)
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    shutil.rmtree(DATA, ignore_errors=True)
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool | None]]:
    """The section's rows for run.py's table."""
    wan, loop = r["over_wan"], r["loopback"]
    darts_wan, bare_wan = wan["darts_median_s"], wan["bare_median_s"]
    fetched = statistics.median(x["bytes"] for x in wan["darts"])
    requests = statistics.median(x["requests"] for x in wan["darts"])
    bare_bytes = statistics.median(x["bytes"] for x in wan["bare"])
    blocks = r["block_bytes"]
    warm = r["warm"]["median"]
    link = f"{wan['link']['rtt_ms']:.0f} ms RTT, ≤ {r['wan']['bandwidth'] / 1e6:.0f} MB/s"
    floor = blocks / r["wan"]["bandwidth"] + r["wan"]["rtt_s"]
    out: list[tuple[str, str, str, str, str, bool | None]] = [
        (f"R cold 10 km ROI, real-size 2 m tile, over WAN ({link})", f"{darts_wan:.2f} s",
         f"bare rasterio read of the window {bare_wan:.2f} s", f"{darts_wan / bare_wan:.1f}×", "≤ 2× the bare read",
         darts_wan <= 2 * bare_wan),
        ("R same, against the link's floor: the ROI's block bytes at its rate, plus one round trip",
         f"{darts_wan:.2f} s", f"floor {floor:.2f} s", f"{darts_wan / floor:.1f}×", "(printed)", None),
        ("R bytes fetched by that cold load", f"{fetched / 1e6:.0f} MB in {requests:.0f} requests",
         f"ROI window's COG blocks {blocks / 1e6:.0f} MB (bare read fetched {bare_bytes / 1e6:.0f} MB)",
         f"{fetched / blocks:.2f}×", "≤ 1.5× the block bytes", fetched <= 1.5 * blocks),
        ("R same cold load on loopback", f"{loop['darts_median_s']:.2f} s",
         f"bare read {loop['bare_median_s']:.2f} s", f"{loop['darts_median_s'] / loop['bare_median_s']:.1f}×",
         "(printed)", None),
        ("R warm load of that ROI from the cube it filled", f"{warm:.3f} s", "—", "—", "≤ 0.1 s", warm <= 0.1),
    ]
    if wan["peer"]:
        peer_cold = wan["peer_median_s"]
        peer_warm = [s for x in wan["peer"] for s in x.get("warm_seconds", [])]
        peer_bytes = statistics.median(x["bytes"] for x in wan["peer"])
        pixels = [x["pixels"] for x in wan["peer"] if "pixels" in x]
        same = " (pixels equal)" if pixels and all(
            p.get(v, {}).get("different") == 0 for p in pixels for v in ("dem", "datamask")) else ""
        out.append(("R smart-geocubes cold over WAN, same ROI", f"{darts_wan:.2f} s",
                    f"peer {peer_cold:.1f} s, {peer_bytes / 1e9:.2f} GB{same}", f"{peer_cold / darts_wan:.0f}× faster",
                    "≥ 100× faster", peer_cold / darts_wan >= 100))
        if loop.get("peer"):
            peer_loop = loop["peer_median_s"]
            darts_loop = loop["darts_median_s"]
            out.append(("R smart-geocubes cold on loopback, same ROI", f"{darts_loop:.2f} s",
                        f"peer {peer_loop:.1f} s ({len(loop['peer'])} run)", f"{peer_loop / darts_loop:.0f}× faster",
                        "≥ 100× faster", peer_loop / darts_loop >= 100))
        if peer_warm:
            median = statistics.median(peer_warm)
            out.append(("R smart-geocubes warm, same ROI", f"{warm:.3f} s", f"peer {median:.3f} s",
                        f"{median / warm:.1f}× faster", "≥ 3× faster", median / warm >= 3))
    return out


if __name__ == "__main__":
    result = measure(3, "--quick" in sys.argv)
    print(json.dumps(result, indent=1, default=str))
    for row in rows(result):
        print(" | ".join(str(v) for v in row))
