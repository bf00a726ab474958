"""Target 7: TCVIS chunk throughput against the local Earth Engine answering each request after 300 ms.

The concurrency bound is (requests in flight) / delay. Small chunks (one request each, 500² px) measure how
close the fill comes to that bound; the cube's own 5000² chunks (4 requests each) are timed too, where this
2-core machine's CPU (the local server computes every pixel) is the limit rather than the delay.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

from common import CACHE, Meter, use_env, wait_quiet

DELAY = 0.3
IN_FLIGHT = 8
SMALL_CHUNK = 500
TOP_LEFT = (123.0, 61.5)
"""Lon/lat of the filled block's corner (Yakutia, where the demo's TCVIS region is)."""


def tcvis_window(product: Any, rows: int, cols: int) -> Any:
    """A chunk-aligned window of rows × cols chunks at TOP_LEFT."""
    from darts_aux.grid import PixelWindow

    e, n = product.extent, product.fill_chunk
    row0 = int((e.y0 - TOP_LEFT[1]) / e.resolution) // n * n
    col0 = int((TOP_LEFT[0] - e.x0) / e.resolution) // n * n
    return PixelWindow(row0, row0 + rows * n, col0, col0 + cols * n)


def fill_once(engine: Any, fill_chunk: int, rows: int, cols: int, workers: int) -> dict[str, Any]:
    """One in-process fill of rows × cols TCVIS chunks into a fresh cube; wall, requests and in-flight peak."""
    from darts_aux.fill import FillContext, run_inline
    from darts_aux.products import tcvis
    from darts_aux.settings import get_settings

    use_env(download_workers=str(workers))
    product = replace(tcvis(), fill_chunk=fill_chunk, read_chunk=min(fill_chunk, 1000))
    data_dir = CACHE / "bench-data" / f"tcvis-{os.getpid()}-{time.time_ns()}"
    engine.reset_log()
    wait_quiet()
    with Meter() as meter:
        report = run_inline(FillContext(product, Path(data_dir), get_settings()), tcvis_window(product, rows, cols))
    shutil.rmtree(data_dir, ignore_errors=True)
    requests = len(engine.compute_requests())
    if report.chunks_fetched != rows * cols or report.failures:
        raise AssertionError(f"TCVIS fill fetched {report.chunks_fetched} of {rows * cols} chunks")
    return {"seconds": meter.wall, "cpu_s": meter.cpu, "foreign": meter.foreign, "chunks": rows * cols,
            "requests": requests, "max_in_flight_seen": engine.max_in_flight_seen()}


def download_once(engine: Any, fill_chunk: int, rows: int, cols: int, workers: int) -> dict[str, Any]:
    """The download step only (EarthEngineSource.fetch of every chunk, `workers` at once), without commits."""
    from concurrent.futures import ThreadPoolExecutor

    from darts_aux.fill import FillContext
    from darts_aux.grid import ChunkGrid
    from darts_aux.products import tcvis
    from darts_aux.settings import get_settings

    product = replace(tcvis(), fill_chunk=fill_chunk, read_chunk=min(fill_chunk, 1000))
    source = FillContext(product, CACHE, get_settings()).source()
    chunks = ChunkGrid(product).chunks(tcvis_window(product, rows, cols))
    items = source.items(chunks)
    engine.reset_log()
    wait_quiet()
    with Meter() as meter, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: source.fetch(c, items[c]), chunks))
    requests = len(engine.compute_requests())
    return {"seconds": meter.wall, "cpu_s": meter.cpu, "foreign": meter.foreign, "chunks": len(chunks),
            "requests": requests, "max_in_flight_seen": engine.max_in_flight_seen()}


def measure(runs: int, quick: bool) -> dict[str, Any]:
    """Small-chunk throughput (median of `runs`) against the bound, and one fill of real-size chunks."""
    from darts_aux.local.earthengine import LocalEarthEngine

    out: dict[str, Any] = {"delay_s": DELAY, "in_flight": IN_FLIGHT, "bound_rps": IN_FLIGHT / DELAY}
    with LocalEarthEngine() as engine:
        os.environ.update(engine.offline_env, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
        use_env(ee_url=engine.url, ee_project=engine.project, ee_credentials="anonymous",
                ee_max_in_flight=str(IN_FLIGHT), retry_delay_seconds="0.2")
        engine.set_delay(DELAY)
        fill_once(engine, SMALL_CHUNK, 2, 4, IN_FLIGHT)  # warm-up: client initialisation
        rows, cols = 8, 8  # quick too: fewer chunks would weigh the first and last wave, not the throughput
        small = [fill_once(engine, SMALL_CHUNK, rows, cols, IN_FLIGHT) for _ in range(runs)]
        rates = [r["requests"] / r["seconds"] for r in small]
        out["small"] = {"runs": small, "rps": median(rates), "chunks_per_s": median(r["chunks"] / r["seconds"]
                                                                                   for r in small)}
        out["small"]["fraction"] = out["small"]["rps"] / out["bound_rps"]
        print(f"  TCVIS {SMALL_CHUNK}² chunks: {out['small']['rps']:.1f} requests/s of {out['bound_rps']:.1f} "
              f"({out['small']['fraction']:.0%}), in flight ≤ {max(r['max_in_flight_seen'] for r in small)}",
              flush=True)
        fetched = [download_once(engine, SMALL_CHUNK, rows, cols, IN_FLIGHT) for _ in range(runs)]
        out["download"] = {"runs": fetched, "rps": median(r["requests"] / r["seconds"] for r in fetched)}
        out["download"]["fraction"] = out["download"]["rps"] / out["bound_rps"]
        print(f"  TCVIS {SMALL_CHUNK}² chunks, download step only: {out['download']['rps']:.1f} requests/s "
              f"({out['download']['fraction']:.0%})", flush=True)
        real = fill_once(engine, 5000, 1, 2 if quick else 4, 4)
        out["real"] = {**real, "rps": real["requests"] / real["seconds"],
                       "chunks_per_s": real["chunks"] / real["seconds"]}
        print(f"  TCVIS 5000² chunks: {real['chunks']} in {real['seconds']:.1f} s ({real['requests']} requests, "
              f"{out['real']['rps']:.1f}/s)", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(2, True), indent=1))
