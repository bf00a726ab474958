"""The demo: the embedded local catalog and Earth Engine, four regions filled and loaded twice, quicklooks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odc.geo.geobox import GeoBox
from rich.console import Console
from rich.table import Table

from .grid import ChunkGrid, ChunkId, roi_window
from .manifest import ChunkRecord, Manifest
from .products import Product, alphaearth, arcticdem, tcvis
from .settings import reload_settings
from .store import cube_paths

PREFECT_OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
PREFECT_HOME_NAME = ".prefect"
"""The demo's own Prefect home, inside its output folder: database, profiles and results of its flow runs."""
PREFECT_SETTINGS_RESET = ("api.url", "api.key", "server.database.connection_url", "profiles_path",
                          "results.local_storage_path")
"""Prefect settings that could send the demo's runs elsewhere; back to their defaults (derived from the home)."""


@dataclass(frozen=True)
class DemoRegion:
    """A named region of one product (and the time steps it loads, for a product with a time axis)."""

    name: str
    product: Product
    geobox: GeoBox
    steps: tuple[str, ...] | None = None

    @property
    def cubes(self) -> list[Product]:
        """The cubes the region's load reads: the product's, or one per time step."""
        from .api import step_cubes

        return step_cubes(self.product, self.steps)


def demo_regions() -> list[DemoRegion]:
    """160 km across four 32 m tiles, 4 km across four 2 m subtiles, TCVIS over the same Yakutian corner, and
    AlphaEarth's embeddings of two years over 4 km beside the 2 m region (one 10 km chunk of each year)."""
    from .local.spec import SUBTILE_CORNER, SUPERTILE_CORNER

    (cx, cy), (sx, sy) = SUPERTILE_CORNER, SUBTILE_CORNER
    lon, lat = GeoBox.from_bbox((cx - 1, cy - 1, cx + 1, cy + 1), "EPSG:3413", resolution=1).extent.centroid.to_crs(
        "EPSG:4326").coords[0]
    return [
        DemoRegion("ArcticDEM 32 m, 4 tiles", arcticdem(32),
                   GeoBox.from_bbox((cx - 80_000, cy - 80_000, cx + 80_000, cy + 80_000), "EPSG:3413", resolution=32)),
        DemoRegion("ArcticDEM 2 m, 4 tiles", arcticdem(2),
                   GeoBox.from_bbox((sx - 2_000, sy - 2_000, sx + 2_000, sy + 2_000), "EPSG:3413", resolution=2)),
        DemoRegion("TCVIS 2000-2019", tcvis(),
                   GeoBox.from_bbox((lon - 0.5, lat - 0.2, lon + 0.5, lat + 0.2), "EPSG:4326", resolution=0.0003)),
        DemoRegion("AlphaEarth 2019 + 2024", alphaearth(),
                   GeoBox.from_bbox((sx + 500, sy + 500, sx + 4_500, sy + 4_500), "EPSG:3413", resolution=10),
                   steps=("2019", "2024")),
    ]


@contextmanager
def demo_prefect(out: Path) -> Iterator[Path]:
    """While the block runs, Prefect is the demo's own: its home is `out`/.prefect, its server a temporary one.

    The demo's flow runs and artifacts land in that home's database, never in the user's ~/.prefect nor on the
    server their PREFECT_API_URL or profile names. Prefect reads its settings from the environment when it is
    first imported, so the PREFECT_* environment is replaced for the block (and restored after it); a Prefect
    imported before gets the same settings for the block. Yields the home.
    """
    home = (out / PREFECT_HOME_NAME).resolve()
    home.mkdir(parents=True, exist_ok=True)  # Prefect makes its home without parents, else runs without a database
    with _environment({"PREFECT_HOME": str(home), **PREFECT_OFFLINE}, drop_prefix="PREFECT_"), _prefect_settings(home):
        yield home


@contextmanager
def _environment(values: Mapping[str, str], drop_prefix: str) -> Iterator[None]:
    """Set `values` and unset every other variable starting with `drop_prefix`; restore all of them afterwards."""
    touched = {key for key in os.environ if key.startswith(drop_prefix)} | set(values)
    saved = {key: os.environ[key] for key in touched if key in os.environ}
    for key in touched:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key in touched:
            os.environ.pop(key, None)
        os.environ.update(saved)


@contextmanager
def _prefect_settings(home: Path) -> Iterator[None]:
    """If Prefect is imported already, its settings for the block: the demo's home, a temporary server, offline."""
    if "prefect" not in sys.modules:
        yield  # Prefect will read the environment set by demo_prefect when it is imported
        return
    from prefect.settings import temporary_settings

    updates = {"home": str(home), "server.analytics_enabled": False, "server.ephemeral.startup_timeout_seconds": 120}
    with temporary_settings(updates=updates, restore_defaults=PREFECT_SETTINGS_RESET):
        yield


def run_demo(out: Path, *, inline: bool, console: Console) -> None:
    """Fill and load each demo region twice against the local services; print a table, write PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    with demo_prefect(out) as prefect_home:
        _run_regions(out, inline=inline, console=console, prefect_home=prefect_home)


def _run_regions(out: Path, *, inline: bool, console: Console, prefect_home: Path) -> None:
    """Start the local services, fill and load every region twice, print the table and where everything is."""
    from .local import LocalCatalog
    from .local.earthengine import LocalEarthEngine

    data_dir = out / "data"
    table = Table(title="darts-aux demo (local catalog and Earth Engine)")
    for column in ("region", "pass", "pixels", "fetched", "reused", "requests", "MB sent", "s"):
        table.add_column(column, justify="left" if column == "region" else "right")
    with ExitStack() as services:
        with console.status("starting the local catalog (the first run generates its tiles) and Earth Engine…"):
            catalog = services.enter_context(LocalCatalog(out / "local-catalog"))
            earth_engine = services.enter_context(LocalEarthEngine())
        _configure(catalog, earth_engine, inline)
        console.print(f"local STAC API {catalog.stac_url}, local Earth Engine {earth_engine.url}; fills run "
                      f"{'in-process' if inline else 'as Prefect flows'}")
        pictures: list[Path] = []
        for region in demo_regions():
            requests_of: Callable[[], list[dict[str, Any]]] = (
                earth_engine.requests if region.product.source == "earth-engine" else catalog.requests)
            for attempt in ("first", "again"):
                catalog.reset_log()
                earth_engine.reset_log()
                before = _manifest_rows(data_dir, region)
                with console.status(f"{region.name}: {attempt} load…"):
                    started = time.perf_counter()
                    dataset = _load(region, data_dir)
                    seconds = time.perf_counter() - started
                after = _manifest_rows(data_dir, region)
                fetched = sum(1 for c, rec in after.items() if _committed_since(before.get(c), rec))
                sent = requests_of()
                first_var = next(iter(dataset.data_vars.values()))
                table.add_row(region.name, attempt, f"{first_var.size / 1e6:.1f} M", str(fetched),
                              str(len(after) - fetched), str(len(sent)),
                              f"{sum(r.get('bytes') or 0 for r in sent) / 1e6:.1f}", f"{seconds:.2f}")
            pictures.extend(_quicklooks(region, dataset, data_dir, out))
    console.print(table)
    console.print("fetched/reused: chunks downloaded / already in the cube; requests and MB: what the local "
                  "servers logged and sent")
    console.print("quicklooks: " + ", ".join(str(p) for p in pictures))
    console.print(f"cubes and manifests: {data_dir}")
    if not inline:
        console.print(f"the demo's flow runs and artifacts: {prefect_home / 'prefect.db'}; browse them with "
                      f"PREFECT_HOME={prefect_home} prefect server start")


def _configure(catalog: Any, earth_engine: Any, inline: bool) -> None:
    """Point the settings at the local services (the Earth Engine client's stray HTTPS goes to it too)."""
    os.environ.update(earth_engine.offline_env)
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # only the stray fetch is proxied
    os.environ["DARTS_AUX_STAC_URL"] = catalog.stac_url
    os.environ["DARTS_AUX_EE_URL"] = earth_engine.url
    os.environ["DARTS_AUX_EE_PROJECT"] = earth_engine.project
    os.environ["DARTS_AUX_EE_CREDENTIALS"] = "anonymous"
    os.environ["DARTS_AUX_ORCHESTRATOR"] = "inline" if inline else "prefect"
    reload_settings()


def _load(region: DemoRegion, data_dir: Path) -> Any:
    from .api import load

    return load(region.product, region.geobox, data_dir, steps=region.steps)


def _quicklooks(region: DemoRegion, dataset: Any, data_dir: Path, out: Path) -> list[Path]:
    from .quicklook import write_coverage_png, write_embedding_png, write_hillshade_png, write_rgb_png

    slug = region.product.key
    bands = region.product.quicklook_bands
    if "dem" in dataset.data_vars:  # a DEM: its hillshade; TCVIS: its three trend bands as colours
        picture = write_hillshade_png(dataset.dem.values, region.product.resolution, out / f"{slug}-hillshade.png",
                                      region.name)
    elif bands:  # embeddings: three of their axes as colours, each year
        pictures = [write_embedding_png(dataset.isel(time=i), bands, out / f"{slug}-{cube.step.label}-rgb.png",
                                        f"{cube.key}: {'/'.join(bands)} as RGB")
                    for i, cube in enumerate(region.cubes) if cube.step is not None]
        manifest = Manifest(cube_paths(data_dir, region.cubes[0]).manifest, ChunkGrid(region.product))
        coverage = write_coverage_png(manifest.files(), out / f"{slug}-coverage.png",
                                      f"{region.cubes[0].key} manifest: chunks by status")
        return [*pictures, coverage]
    else:
        picture = write_rgb_png(dataset, out / f"{slug}-rgb.png", f"{region.name}: TCB/TCG/TCW trends as RGB")
    manifest = Manifest(cube_paths(data_dir, region.product).manifest, ChunkGrid(region.product))
    coverage = write_coverage_png(manifest.files(), out / f"{slug}-coverage.png", f"{slug} manifest: chunks by status")
    return [picture, coverage]


def _manifest_rows(data_dir: Path, region: DemoRegion) -> dict[tuple[str, ChunkId], ChunkRecord]:
    """The latest manifest row of each (cube, chunk) of the region: one cube, or one per time step."""
    window = roi_window(region.geobox, region.product.extent)
    rows = {}
    for cube in region.cubes:
        latest = Manifest(cube_paths(data_dir, cube).manifest, ChunkGrid(cube)).latest(window)
        rows.update({(cube.key, chunk): record for chunk, record in latest.items()})
    return rows


def _committed_since(before: ChunkRecord | None, after: ChunkRecord) -> bool:
    """True when the chunk's pixels were committed between the two records."""
    return after.snapshot_id is not None and (before is None or before.snapshot_id != after.snapshot_id)
