"""Target 5: a pan-Arctic manifest (every chunk of the 2 m cube, mixed partial/full) — ROI query, load, size."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, ROI_2M, roi_geobox, timed

GRIDS: dict[str, tuple[int, int | None]] = {
    "3600² (1.07 M chunks, as the issue counts)": (3600, None),
    "1000² (the cube's fill chunk), 1.07 M chunks around the ROI": (1000, 1034),
    "1000², 5.7 M chunks (41 % of the extent, PGC's coverage)": (1000, 2386),
}
"""Label → (fill chunk, side in chunks of the square block of rows around the ROI; None: every chunk)."""
QUICK_SKIP = ("1000², 5.7 M chunks (41 % of the extent, PGC's coverage)",)
FEWER_RUNS = {"1000², 5.7 M chunks (41 % of the extent, PGC's coverage)": 3}
"""Grids timed with fewer runs than the others: each whole-table load of 5.7 M rows takes ~2 s."""
SEED = 5
"""Seed of the synthetic manifest rows."""
BUILT = "built.json"
"""Marker of a built manifest folder: how it was made and what building it took."""
SEGMENTS_AFTER = 16
"""Small segments appended after the compaction (a fill adds one per chunk; compaction runs past 64)."""


def product_with_chunk(fill_chunk: int) -> Any:
    """The 2 m ArcticDEM product with another fill chunk (the grid decides how many manifest rows exist)."""
    from darts_aux.products import arcticdem

    return replace(arcticdem(2), fill_chunk=fill_chunk, read_chunk=fill_chunk)


def synthetic_table(grid: Any, seed: int = 5, block: tuple[int, int, int] | None = None) -> Any:
    """One row per chunk of the grid (or of a square block (row0, col0, side) of it): ~60 % full, the rest partial
    with a covered polygon; GeoParquet schema."""
    import pyarrow as pa
    import shapely

    from darts_aux.manifest import SCHEMA, _geo_metadata

    rows, cols = grid.shape
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
    if block is not None:
        row0, col0, side = block
        r, c = np.divmod(np.arange(side * side, dtype=np.int64), side)
        r, c = r + row0, c + col0
    n = r.size
    e = grid.product.extent
    size = grid.chunk * e.resolution
    left, top = e.x0 + c * size, e.y0 - r * size
    footprints = shapely.box(left, top - size, np.minimum(left + size, e.bounds[2]), top)
    full = rng.random(n) < 0.6
    coverage = np.where(full, 1.0, rng.uniform(0.05, 0.95, n))
    half = shapely.box(left, top - size, left + size * 0.5, top)
    covered = np.where(full, None, shapely.to_wkb(half))
    ids = np.char.add(np.char.add("r", np.char.zfill(r.astype(str), 4)),
                      np.char.add("c", np.char.zfill(c.astype(str), 4)))
    item = np.char.add(np.char.add("tile_", r.astype(str)), "_2m_v4.1")
    checked = datetime(2026, 11, 1, tzinfo=UTC)
    offsets = np.arange(n + 1, dtype=np.int32)
    table = pa.table({
        "chunk_row": pa.array(r.astype(np.int32)),
        "chunk_col": pa.array(c.astype(np.int32)),
        "chunk_id": pa.array(ids),
        "status": pa.array(np.where(full, "full", "partial")),
        "items_applied": pa.ListArray.from_arrays(offsets, _flat(pa.array(item, pa.string()))),
        "items_failed": pa.ListArray.from_arrays(np.zeros(n + 1, np.int32), pa.array([], pa.string())),
        "coverage": pa.array(coverage),
        "checked_at": pa.array(np.full(n, np.datetime64(checked.replace(tzinfo=None), "us")),
                               pa.timestamp("us", "UTC")),
        "snapshot_id": pa.array(np.char.add("SNAP", (r % 97).astype(str))),
        "geometry": pa.array(shapely.to_wkb(footprints), pa.binary()),
        "covered": pa.array(covered, pa.binary()),
        "note": pa.nulls(n, pa.string()),
    }, schema=SCHEMA)
    return table.replace_schema_metadata({b"geo": _geo_metadata(e.crs)})


def _flat(array: Any) -> Any:
    """A plain Arrow array (pyarrow may build large inputs as chunked arrays)."""
    return array.combine_chunks() if hasattr(array, "combine_chunks") else array


def build(root: Path, grid: Any, block: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """A manifest folder: the synthetic table as one old segment, folded by Manifest.compact, plus fresh segments.

    The compacted table is kept between runs (`BUILT` records how it was made and how long that took): building
    the 5.7 M-row one takes a minute, and only its reads are measured. A later run removes the segments an
    earlier one appended.
    """
    import pyarrow.parquet as pq

    from darts_aux.grid import ChunkId
    from darts_aux.manifest import SCHEMA, ChunkRecord, Manifest, utc_now

    manifest = Manifest(root, grid)
    key = {"fill_chunk": grid.product.fill_chunk, "block": list(block) if block else None, "seed": SEED,
           "columns": SCHEMA.names}
    marker = root / BUILT
    saved = json.loads(marker.read_text()) if marker.exists() else {}
    if saved.get("key") == key and len(manifest.files()) >= 1 and manifest.files()[0].name.startswith("compacted-"):
        shutil.rmtree(manifest.segments_dir, ignore_errors=True)
        info = {**saved["info"], "reused": True}
    else:
        shutil.rmtree(root, ignore_errors=True)
        manifest.segments_dir.mkdir(parents=True)
        started = time.perf_counter()
        table = synthetic_table(grid, seed=SEED, block=block)
        half = table.num_rows // 2  # two segments: compaction folds only when there is more than one file
        for part, rows in enumerate((table.slice(0, half), table.slice(half))):
            pq.write_table(rows, manifest.segments_dir / f"0000000000000000000{part}-0-bulk.parquet",
                           compression="zstd")
        built = time.perf_counter() - started
        started = time.perf_counter()
        manifest.compact()
        info = {"build_s": round(built, 2), "compact_s": round(time.perf_counter() - started, 2),
                "bytes": sum(p.stat().st_size for p in manifest.files()), "files": len(manifest.files())}
        marker.write_text(json.dumps({"key": key, "info": info}))
        info = {**info, "reused": False}
    return {**info,
            "_add": lambda k: [manifest.append([ChunkRecord(ChunkId(i, i), "full", ("x",), (), 1.0,
                                                            utc_now() + timedelta(seconds=i), "S")])
                               for i in range(k)]}


def not_full(manifest: Any, window: Any) -> list[Any]:
    """'Which chunks of this ROI are not full' — what a load asks before deciding to fill."""
    latest = manifest.latest(window)
    return [c for c in manifest.grid.chunks(window) if c not in latest or latest[c].status != "full"]


def measure(runs: int, quick: bool = False, workdir: Path = CACHE / "bench-manifest") -> dict[str, Any]:
    """Per grid: size, ROI query and whole-manifest load, compacted only and with fresh segments."""
    from darts_aux.grid import roi_window
    from darts_aux.manifest import Manifest

    out: dict[str, Any] = {}
    from darts_aux.grid import ChunkGrid

    for label, (fill_chunk, side) in GRIDS.items():
        if quick and label in QUICK_SKIP:
            continue
        product = product_with_chunk(fill_chunk)
        grid = ChunkGrid(product)
        window = roi_window(roi_geobox(ROI_2M), product.extent)
        block = None if side is None else _block_around(grid, window, side)
        root = workdir / f"chunk{fill_chunk}-{side or 'all'}"
        info = build(root, grid, block)
        add = info.pop("_add")
        manifest = Manifest(root, grid)
        result = {"rows": grid.shape[0] * grid.shape[1] if block is None else side * side, **info}
        grid_runs = min(runs, FEWER_RUNS.get(label, runs))
        result["roi_query"] = timed(lambda m=manifest, w=window: not_full(m, w), grid_runs).summary()
        result["load_table"] = timed(manifest.latest_table, grid_runs).summary()
        result["partial_query"] = timed(lambda m=manifest: m.chunks_with_status("partial"), 3, warmup=0).summary()
        result["status_query"] = timed(lambda m=manifest: m.latest_table(columns=("status",)), 3, warmup=0).summary()
        add(SEGMENTS_AFTER)
        result["segments_after"] = SEGMENTS_AFTER
        result["roi_query_segments"] = timed(lambda m=manifest, w=window: not_full(m, w), grid_runs).summary()
        result["load_table_segments"] = timed(manifest.latest_table, grid_runs).summary()
        out[label] = result
        print(f"  manifest {label}: {result['rows']:,} rows, {result['bytes'] / 1e6:.1f} MB, "
              f"ROI query {result['roi_query']['median'] * 1e3:.1f} ms "
              f"({result['roi_query_segments']['median'] * 1e3:.1f} ms with {SEGMENTS_AFTER} segments), "
              f"load table {result['load_table']['median']:.2f} s ({result['load_table_segments']['median']:.2f} s), "
              f"partial chunks (revisit) {result['partial_query']['median']:.2f} s, statuses (darts-aux status) "
              f"{result['status_query']['median']:.2f} s", flush=True)
    return out


def _block_around(grid: Any, window: Any, side: int) -> tuple[int, int, int]:
    """(row0, col0, side): a square block of chunks holding the ROI's chunks, inside the grid."""
    first = grid.chunks(window)[0]
    row0 = min(max(0, first.row - side // 2), grid.shape[0] - side)
    col0 = min(max(0, first.col - side // 2), grid.shape[1] - side)
    return row0, col0, side


if __name__ == "__main__":
    measure(5)
