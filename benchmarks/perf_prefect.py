"""Target 4: Prefect's cost per chunk on trivially small chunks, and peak RSS of a 2,000-chunk fill.

The chunks are 100 × 100 px of the 32 m cube (the same flow tasks as `fill_arcticdem`: discover, download and
commit tasks over batches of chunks, artifacts), filled once through Prefect and once in-process (the same step
functions; in-process downloads stay in memory where the flow's tasks stage them on disk);
Prefect's overhead per chunk = (flow wall − in-process wall) / chunks. Each fill runs in a fresh process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

from common import CACHE, DEFAULT_CATALOG, REPO, Meter, catalog, wait_quiet

SMALL_CHUNK = 100
TOP_LEFT = (520_000.0, 3_280_000.0)
"""Inside the default catalog's 32 m data, away from its top edge."""

CHILD = r"""
import json, resource, sys, time
from dataclasses import replace
args = json.loads(sys.argv[1])
from darts_aux.fill import FillContext, run_inline
from darts_aux.grid import PixelWindow
from darts_aux.products import arcticdem
from darts_aux.settings import get_settings
from pathlib import Path
product = replace(arcticdem(32), fill_chunk=args["chunk"], read_chunk=args["chunk"])
e, n = product.extent, args["chunk"]
row0 = int((e.y0 - args["top"]) / e.resolution) // n * n
col0 = int((args["left"] - e.x0) / e.resolution) // n * n
window = PixelWindow(row0, row0 + args["rows"] * n, col0, col0 + args["cols"] * n)
settings = get_settings()
ctx = FillContext(product, Path(args["data_dir"]), settings)
if args["mode"] == "prefect":
    from prefect import flow
    from darts_aux.flows.tasks import fill_window, thread_runner

    @flow(name="bench-fill", task_runner=thread_runner(settings.download_workers))
    def bench_fill():
        return fill_window(ctx, window)

    run = bench_fill
else:
    run = lambda: run_inline(ctx, window)
started = time.perf_counter()
report = run()
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent, VmHWM starts anew with exec
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "fetched": report.chunks_fetched, "failures": len(report.failures),
                  "cpu_s": usage.ru_utime + usage.ru_stime,
                  "max_rss_mb": hwm_kb / 1024}))
"""


def fill_child(mode: str, rows: int, cols: int, data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """One fill of rows × cols small chunks in a fresh process; its wall time, peak RSS and counts."""
    shutil.rmtree(data_dir, ignore_errors=True)
    args = {"mode": mode, "rows": rows, "cols": cols, "chunk": SMALL_CHUNK, "left": TOP_LEFT[0], "top": TOP_LEFT[1],
            "data_dir": str(data_dir)}
    wait_quiet()
    with Meter() as meter:  # this process's descendants: the child, the Prefect server, the catalog's servers
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=1800)
    shutil.rmtree(data_dir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} fill failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["system_cpu_s"] = meter.cpu
    result["foreign"] = meter.foreign
    if result["fetched"] != rows * cols or result["failures"]:
        raise AssertionError(f"{mode} fill fetched {result['fetched']} of {rows * cols} chunks: {result}")
    return result


PAIRS = 3
"""Pairs of 200-chunk fills (in-process, Prefect): their overheads agreed within 1 ms/chunk over five pairs."""


def measure(runs: int, quick: bool) -> dict[str, Any]:
    """Overhead per chunk on 200 chunks (median of at most PAIRS pairs) and the peak RSS of a 2,000-chunk fill.

    A pair of 200-chunk fills takes ~20 s here (the commits of tiny chunks dominate).
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    os.environ.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                      PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", PREFECT_LOGGING_LEVEL="WARNING")
    work = CACHE / "bench-data" / f"prefect-{os.getpid()}"
    out: dict[str, Any] = {"chunk_px": SMALL_CHUNK}
    with catalog(DEFAULT_CATALOG) as cat, prefect_test_harness(server_startup_timeout=120):
        env = {**os.environ, "DARTS_AUX_STAC_URL": cat.stac_url, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        print(f"  Prefect test server at {env['PREFECT_API_URL']}", flush=True)
        fill_child("prefect", 2, 5, work, env)  # warm-up: server tables, OS caches
        pairs = []
        for _ in range(min(runs, PAIRS)):
            pairs.append((fill_child("inline", 10, 20, work, env), fill_child("prefect", 10, 20, work, env)))
        overheads = [(p["seconds"] - i["seconds"]) / 200 for i, p in pairs]
        out["small"] = {"chunks": 200, "runs": pairs, "overhead_ms": median(overheads) * 1e3,
                        "inline_median_s": median(i["seconds"] for i, _ in pairs),
                        "prefect_median_s": median(p["seconds"] for _, p in pairs),
                        "client_cpu_ms_per_chunk": median((p["cpu_s"] - i["cpu_s"]) / 200 for i, p in pairs) * 1e3,
                        "system_cpu_ms_per_chunk": median((p["system_cpu_s"] - i["system_cpu_s"]) / 200
                                                          for i, p in pairs) * 1e3}
        print(f"  200 chunks: in-process {out['small']['inline_median_s']:.1f} s, Prefect "
              f"{out['small']['prefect_median_s']:.1f} s → {out['small']['overhead_ms']:.1f} ms/chunk", flush=True)
        rows, cols = (20, 25) if quick else (40, 50)
        big = fill_child("prefect", rows, cols, work, env)
        out["large"] = {"chunks": rows * cols, **big}
        print(f"  {rows * cols} chunks through Prefect: {big['seconds']:.0f} s, peak RSS {big['max_rss_mb']:.0f} MB",
              flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(1, True), indent=1))
