"""The demo: the embedded local catalog, two ArcticDEM regions filled and loaded twice, quicklooks."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from odc.geo.geobox import GeoBox
from rich.console import Console
from rich.table import Table

from .grid import ChunkGrid, ChunkId, roi_window
from .manifest import ChunkRecord, Manifest
from .products import arcticdem
from .settings import reload_settings
from .store import cube_paths

PREFECT_OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


@dataclass(frozen=True)
class DemoRegion:
    """A named region to load at one resolution."""

    name: str
    resolution: int
    geobox: GeoBox


def demo_regions() -> list[DemoRegion]:
    """160 km across four 32 m supertiles, and 4 km across four 2 m subtiles (local catalog in Yakutia)."""
    from .local.spec import SUBTILE_CORNER, SUPERTILE_CORNER

    (cx, cy), (sx, sy) = SUPERTILE_CORNER, SUBTILE_CORNER
    return [
        DemoRegion("32 m, 4 tiles", 32,
                   GeoBox.from_bbox((cx - 80_000, cy - 80_000, cx + 80_000, cy + 80_000), "EPSG:3413", resolution=32)),
        DemoRegion("2 m, 4 tiles", 2,
                   GeoBox.from_bbox((sx - 2_000, sy - 2_000, sx + 2_000, sy + 2_000), "EPSG:3413", resolution=2)),
    ]


def run_demo(out: Path, *, inline: bool, console: Console) -> None:
    """Fill and load each demo region twice against the local catalog; print a table, write PNGs."""
    from . import load_arcticdem
    from .local import LocalCatalog
    from .quicklook import write_coverage_png, write_hillshade_png

    for key, value in PREFECT_OFFLINE.items():
        os.environ.setdefault(key, value)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    table = Table(title="darts-aux demo (local catalog)")
    for column in ("region", "pass", "pixels", "fetched", "reused", "STAC req", "file req", "MB", "s"):
        table.add_column(column, justify="right" if column != "region" else "left")
    with console.status("building and starting the local catalog (first run generates the tiles)…"):
        catalog = LocalCatalog(out / "local-catalog").start()
    try:
        os.environ["DARTS_AUX_STAC_URL"] = catalog.stac_url
        os.environ["DARTS_AUX_ORCHESTRATOR"] = "inline" if inline else "prefect"
        reload_settings()
        console.print(f"local STAC API: {catalog.stac_url}  (fills run {'in-process' if inline else 'as Prefect flows'})")
        pictures = []
        for region in demo_regions():
            for attempt in ("first", "again"):
                catalog.reset_log()
                before = _manifest_rows(data_dir, region)
                with console.status(f"{region.name}: {attempt} load…"):
                    started = time.perf_counter()
                    dataset = load_arcticdem(region.geobox, data_dir, region.resolution)
                    seconds = time.perf_counter() - started
                after = _manifest_rows(data_dir, region)
                fetched = sum(1 for c, rec in after.items() if _committed_since(before.get(c), rec))
                requests = catalog.requests()
                table.add_row(region.name, attempt, f"{dataset.dem.size / 1e6:.1f} M", str(fetched), str(len(after) - fetched),
                              str(sum(r["upstream"] == "stac" for r in requests)),
                              str(sum(r["upstream"] == "files" for r in requests)),
                              f"{sum(r.get('bytes') or 0 for r in requests) / 1e6:.1f}", f"{seconds:.2f}")
            slug = f"arcticdem-{region.resolution}m"
            pictures.append(write_hillshade_png(dataset.dem.values, region.resolution, out / f"{slug}-hillshade.png",
                                                f"ArcticDEM {region.name}"))
            manifest = Manifest(cube_paths(data_dir, arcticdem(region.resolution)).manifest,
                                ChunkGrid(arcticdem(region.resolution)))
            pictures.append(write_coverage_png(manifest.files(), out / f"{slug}-coverage.png",
                                               f"{slug} manifest: chunks by status"))
    finally:
        catalog.stop()
    console.print(table)
    console.print("fetched/reused: chunks downloaded / already in the cube; req: requests the local servers "
                  "logged; MB: bytes they sent")
    console.print("quicklooks: " + ", ".join(str(p) for p in pictures))
    console.print(f"cubes and manifests: {data_dir}")


def _manifest_rows(data_dir: Path, region: DemoRegion) -> dict[ChunkId, ChunkRecord]:
    product = arcticdem(region.resolution)
    window = roi_window(region.geobox, product.extent)
    return Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product)).latest(window)


def _committed_since(before: ChunkRecord | None, after: ChunkRecord) -> bool:
    """True when the chunk's pixels were committed between the two records."""
    return after.snapshot_id is not None and (before is None or before.snapshot_id != after.snapshot_id)
