"""The performance benchmarks in one run: every target of the speed goals, peers measured in the same run.

    uv run python benchmarks/run.py            # full run (~15 min, 2-core machine), writes perf_results.json
    uv run python benchmarks/run.py --quick    # short pass (~8 min), writes perf_results_quick.json
    uv run python benchmarks/run.py --only manifest read
    uv run python benchmarks/run.py --only scaleout   # Dask and Ray clusters over a WAN-shaped link (~5 min)

Prints one table: target, measured median, peer/baseline, ratio, goal, met ✓/✗. The sections realsize and
campaign (rows R and C) read a world of real-size tiles that is built once under .cache/realsize-catalog (about
3 min per 2 m tile, 7.8 GB for all; `benchmarks/realsize_world.py`); their first run builds what they need.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average

HERE = Path(__file__).resolve().parent
SECTIONS = ("manifest", "read", "tcvis", "prefect", "realsize", "campaign", "scaleout")
MODULES = {"campaign": "campaign"}
"""Sections whose module is not perf_<name>."""
Row = tuple[str, str, str, str, str, bool | None]


def run_section(name: str, runs: int, quick: bool) -> dict[str, Any]:
    """Run one benchmark module's measure(); with the load average before and after."""
    module = __import__(MODULES.get(name, f"perf_{name}"))
    before, started = load_average(), time.perf_counter()
    result = module.measure(runs, quick)
    return {"result": result, "seconds": time.perf_counter() - started, "load_before": before,
            "load_after": load_average()}


def rows_read(r: dict[str, Any]) -> list[Row]:
    """Targets 1, 2, 3 and 6."""
    warm, raw = r["warm_read"]["load"]["median"], r["warm_read"]["raw"]["median"]
    into = r["warm_read"].get("raw_into", {}).get("median")
    plain = r["warm_read"].get("uncompressed", {}).get("median")
    fetch = r["warm_read"].get("chunk_fetch", {}).get("median")
    files = r["warm_read"].get("chunk_files", {}).get("median")
    kept = r["warm_read"].get("chunk_files_kept", {}).get("median")
    decoded = r["warm_read"].get("decoded_from_files", {}).get("median")
    lazy = r["warm_read"].get("lazy_compute", {}).get("median")
    objects, nbytes = r["warm_read"].get("chunk_objects", 0), r["warm_read"].get("chunk_bytes", 0)
    fetched = f"{objects} chunk objects, {nbytes / 1e6:.0f} MB"
    wan, direct = r["peer_wan"]["median"], r["peer_direct"]["median"]
    fill, bare = r["cold_fill"]["fill_mpx_s"], r["cold_fill"]["bare_mpx_s"]
    mpx = r["cold_fill"].get("pixels", 10**8) / 1e6
    fresh = r["fresh_process"]
    return [
        ("1 warm read, 10 km ROI at 2 m (125 MB)", f"{warm:.3f} s", f"raw file into a new array {raw:.3f} s",
         f"{warm / raw:.1f}×", "≤ 0.15 s and ≤ 3× raw", warm <= 0.15 and warm <= 3 * raw),
        *([("1 same, against a refill of one preallocated buffer", f"{warm:.3f} s", f"readinto {into:.3f} s",
            f"{warm / into:.1f}×", "(printed)", None)] if into else []),
        *([("1 same window from an uncompressed copy of its chunks", f"{plain:.3f} s",
            f"raw file into a new array {raw:.3f} s", f"{plain / raw:.1f}×", "(printed)", None)] if plain else []),
        *([(f"1 part of it: fetch the {fetched} through icechunk", f"{fetch:.3f} s",
            f"the same bytes from plain files {files:.3f} s", f"{fetch / files:.1f}×", "(printed)", None)]
          if fetch and files else []),
        *([("1 same fetch against plain files, every buffer kept until all are read (as the fetch keeps them)",
            f"{fetch:.3f} s", f"plain files, all kept {kept:.3f} s", f"{fetch / kept:.1f}×", "(printed)", None)]
          if fetch and kept else []),
        *([("1 same window decoded by the same reader from those plain files (no icechunk)", f"{decoded:.3f} s",
            f"raw file into a new array {raw:.3f} s", f"{decoded / raw:.1f}×", "(printed)", None)] if decoded else []),
        *([("1 same ROI loaded lazily (persist=False, dask over zarr) and computed", f"{lazy:.3f} s",
            f"warm read {warm:.3f} s", f"{lazy / warm:.1f}×", "(printed)", None)] if lazy else []),
        (f"2 odc-stac peer over WAN ({r['wan_link']['rtt_ms']:.0f} ms RTT, ≤ 50 MB/s)", f"{warm:.3f} s",
         f"odc.stac.load {wan:.2f} s", f"{wan / warm:.0f}× faster", "≥ 10× faster", wan / warm >= 10),
        ("2 odc-stac peer on loopback (no shaping)", f"{warm:.3f} s", f"odc.stac.load {direct:.2f} s",
         f"{direct / warm:.0f}× faster", "(printed)", None),
        (f"3 cold fill of the ROI's chunks ({mpx:.0f} Mpx, 4 workers)", f"{fill:.1f} Mpx/s",
         f"bare rasterio reads {bare:.1f} Mpx/s",
         f"{fill / bare:.0%}", "≥ 70 %", fill / bare >= 0.70),
        ("6 fresh process: start + imports + fast-path load", f"{fresh['result_s']:.2f} s",
         f"until exit {fresh['exit_s']:.2f} s", "—", "≤ 1.5 s",
         fresh["result_s"] <= 1.5 and not fresh["heavy_modules"]),
    ]


def rows_manifest(r: dict[str, Any]) -> list[Row]:
    """Target 5, for the issue's 1.07 M chunks and for the cube's own grid."""
    out: list[Row] = []
    for label, m in r.items():
        rows = f"{m['rows'] / 1e6:.2f} M rows, {m['bytes'] / 1e6:.0f} MB"
        query, load = m["roi_query"]["median"], m["load_table"]["median"]
        out.append((f"5 manifest ROI query, {label}", f"{query * 1e3:.1f} ms",
                    f"+{m['segments_after']} segments {m['roi_query_segments']['median'] * 1e3:.1f} ms", rows,
                    "≤ 50 ms", max(query, m["roi_query_segments"]["median"]) <= 0.050))
        out.append((f"5 manifest load (Arrow), {label}", f"{load:.2f} s",
                    f"+{m['segments_after']} segments {m['load_table_segments']['median']:.2f} s",
                    _whole_manifest_queries(m), "≤ 1 s",
                    max(load, m["load_table_segments"]["median"]) <= 1.0))
    return out


def _whole_manifest_queries(m: dict[str, Any]) -> str:
    """What `darts-aux status` and the revisit flow ask of the whole manifest (older results timed building every
    record instead)."""
    if "status_query" in m:
        return f"statuses {m['status_query']['median']:.2f} s, partial chunks {m['partial_query']['median']:.1f} s"
    if "partial_query" in m:
        return f"partial chunks {m['partial_query']['median']:.1f} s"
    return f"records {m['load_records']['median']:.1f} s"


def rows_prefect(r: dict[str, Any]) -> list[Row]:
    """Target 4."""
    small, large = r["small"], r["large"]
    return [
        (f"4 Prefect overhead, 200 chunks of {r['chunk_px']}² px", f"{small['overhead_ms']:.0f} ms/chunk",
         f"in-process {small['inline_median_s']:.1f} s, Prefect {small['prefect_median_s']:.1f} s", "—",
         "≤ 20 ms/chunk", small["overhead_ms"] <= 20),
        (f"4 peak RSS, {large['chunks']:,} chunks through Prefect", f"{large['max_rss_mb']:.0f} MB",
         f"{large['seconds']:.0f} s", "—", "≤ 1500 MB" + ("" if large["chunks"] >= 2000 else " (at 2,000)"),
         large["max_rss_mb"] <= 1500 if large["chunks"] >= 2000 else None),
    ]


def rows_tcvis(r: dict[str, Any]) -> list[Row]:
    """Target 7."""
    bound = r["bound_rps"]
    d, s, real = r["download"], r["small"], r["real"]
    return [
        (f"7 TCVIS download, {r['in_flight']} in flight, {r['delay_s'] * 1e3:.0f} ms/request",
         f"{d['rps']:.1f} req/s", f"bound {bound:.1f} req/s", f"{d['fraction']:.0%}", "≥ 80 %", d["fraction"] >= 0.8),
        ("7 TCVIS fill (download + commit), 500² chunks", f"{s['rps']:.1f} chunks/s", f"bound {bound:.1f}/s",
         f"{s['fraction']:.0%}", "≥ 80 %", s["fraction"] >= 0.8),
        ("7 TCVIS fill, 5000² chunks (4 requests each)", f"{real['chunks_per_s']:.2f} chunks/s",
         f"bound {bound / 4:.1f}/s", f"{real['chunks_per_s'] / (bound / 4):.0%}", "(CPU-bound here)", None),
    ]


def rows_scaleout(r: dict[str, Any]) -> list[Row]:
    """Scale-out: chunks per minute of one prefetch on Dask and Ray at each size, over the WAN link."""
    link = f"{r['link']['rtt_ms']:.0f} ms RTT, ≤ {r['link']['bandwidth_mbs']:.0f} MB/s"
    out: list[Row] = []
    for engine in (e for e in ("dask", "ray") if e in r):  # a quick pass runs Ray only
        sizes = r[engine]["sizes"]
        for size, m in sizes.items():
            out.append((f"8 scale-out prefetch on {engine}, {size} worker{'s' * (size != '1')} ({link})",
                        f"{m['chunks_per_min']:.1f} chunks/min", f"{m['chunks']} chunks in {m['seconds']:.1f} s",
                        f"{m['speedup']:.2f}× one worker", "(printed; exact)", None))
    own, darts = r.get("ray_own_instance"), r["darts_pattern"]
    if own:
        out.append(("8 same on the Ray runner's own local instance (includes starting Ray)",
                    f"{own['chunks_per_min']:.1f} chunks/min", f"{own['seconds']:.1f} s", "—", "(printed; exact)",
                    None))
    out.append((f"8 DARTS pattern: {darts['tasks']} scene tasks on Ray into one cube",
                f"{darts['chunks_per_min']:.1f} chunks/min", f"{darts['chunks']} chunks in {darts['seconds']:.1f} s",
                "—", "(printed; exact)", None))
    return out


def rows_realsize(r: dict[str, Any]) -> list[Row]:
    """The cold and warm ROI on a real-size tile (benchmarks/perf_realsize.py)."""
    import perf_realsize

    return perf_realsize.rows(r)


def rows_campaign(r: dict[str, Any]) -> list[Row]:
    """Scenes by concurrent workers into one data dir over WAN (benchmarks/campaign.py)."""
    import campaign

    return campaign.rows(r)


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "read": rows_read, "manifest": rows_manifest, "prefect": rows_prefect, "tcvis": rows_tcvis,
    "realsize": rows_realsize, "campaign": rows_campaign, "scaleout": rows_scaleout}
ORDER = ("read", "prefect", "manifest", "tcvis", "realsize", "campaign", "scaleout")


def table(results: dict[str, Any]) -> str:
    """The markdown table of every section present."""
    lines = ["| target | measured (median) | peer / baseline | ratio | goal | met |", "|---|---:|---:|---:|---|:-:|"]
    sections = results["sections"]
    rows = [row for name in ORDER if name in sections for row in ROWS[name](sections[name]["result"])]
    for target, measured, peer, ratio, goal, met in sorted(rows, key=lambda row: row[0][0]):
        mark = "—" if met is None else ("✓" if met else "✗")
        lines.append(f"| {target} | {measured} | {peer} | {ratio} | {goal} | {mark} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What this ran on."""
    import numpy
    import zarr

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "numpy": numpy.__version__, "zarr": zarr.__version__,
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller fills (~4 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--json", type=Path, help="results file (default perf_results[_quick].json here)")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and exit")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 5
    path = args.json or HERE / ("perf_results_quick.json" if args.quick else "perf_results.json")
    if args.table:
        print(table(json.loads(path.read_text())))
        return 0
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "sections": {}}
    if args.only and path.exists():  # keep the other sections of an earlier run
        results["sections"] = json.loads(path.read_text()).get("sections", {})
    started = time.perf_counter()
    for name in args.only or SECTIONS:
        print(f"{name} (load average {load_average():.1f}) …", flush=True)
        results["sections"][name] = run_section(name, runs, args.quick)
        path.write_text(json.dumps(results, indent=1, default=str))
    results["seconds"] = time.perf_counter() - started
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{table(results)}\n\n{results['seconds'] / 60:.1f} min; load average "
          + ", ".join(f"{n} {s['load_before']:.1f}→{s['load_after']:.1f}" for n, s in results["sections"].items())
          + f"; results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
