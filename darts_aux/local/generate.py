"""Write the synthetic tiles of a CatalogSpec as COGs, once: a marker file makes rebuilding a no-op.

Measured on the 2-core dev machine (GDAL 3.10): the COG driver reading a sparse GTiff scans every
empty block (3.5-4.8 s for one 25,100² float32 tile), but reading a VRT that places small in-memory
rasters skips the holes (0.8 s, most of it compressing the data blocks). `OVERVIEWS=AUTO` would cost
11 s per sparse tile, so no overviews are written (loaders read full resolution only).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from filelock import FileLock, Timeout
from rasterio.io import MemoryFile
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from darts_aux.local.spec import CatalogSpec, default_spec
from darts_aux.local.synthetic import DEM_NODATA, MASK_NODATA, tile_pixels
from darts_aux.local.tiles import BLOCK, EPSG, TileRef

GENERATOR_VERSION = "1"
"""Bump when the synthetic formulas or the file layout change: cached catalogs are then rebuilt."""
MARKER = "catalog-build.json"
TILES_DIR = "arcticdem"

Progress = Callable[[str], None]
"""Receives one line of prose per build step (e.g. print to stderr)."""


def _quiet(line: str) -> None:
    """The default progress: say nothing."""


@dataclass(frozen=True)
class AssetFormat:
    """How one asset is stored: GDAL data type, nodata and LZW predictor."""

    name: str
    dtype: str
    vrt_type: str
    nodata: float
    predictor: int


ASSETS: tuple[AssetFormat, ...] = (
    AssetFormat("dem", "float32", "Float32", DEM_NODATA, 3),
    AssetFormat("datamask", "uint8", "Byte", MASK_NODATA, 2),
)
COG_OPTIONS: dict[str, str] = {
    "BLOCKSIZE": str(BLOCK),
    "COMPRESS": "LZW",
    "OVERVIEWS": "NONE",
    "SPARSE_OK": "TRUE",
    "NUM_THREADS": "1",
}


@dataclass(frozen=True)
class BuildResult:
    """Outcome of `build_catalog`: where, which content, and whether anything was written."""

    root: Path
    fingerprint: str
    built: bool
    """False when the root already held this catalog (the call was a no-op)."""
    seconds: float
    items: int


def catalog_fingerprint(spec: CatalogSpec) -> str:
    """Hash of the generator version and the spec content: the marker's identity."""
    return f"{GENERATOR_VERSION}-{spec.fingerprint()}"


def is_built(root: Path, spec: CatalogSpec) -> bool:
    """Whether `root` holds a complete catalog made by this generator for this spec content."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("fingerprint") == catalog_fingerprint(spec)


def build_catalog(
    root: Path, spec: CatalogSpec | None = None, *, workers: int | None = None, progress: Progress = _quiet
) -> BuildResult:
    """Write every item of `spec` under `root` (PGC's S3 layout); a no-op when already built.

    Safe to call from several processes at once (a file lock serialises them). A root holding a
    different catalog has its tile tree replaced. `progress` hears one line per step of a build.
    """
    spec = default_spec() if spec is None else spec
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fingerprint = catalog_fingerprint(spec)
    with _build_lock(root, progress):
        if is_built(root, spec):
            return BuildResult(root, fingerprint, False, time.perf_counter() - t0, len(spec.item_ids()))
        (root / MARKER).unlink(missing_ok=True)
        shutil.rmtree(root / TILES_DIR, ignore_errors=True)
        jobs = [(root, tile, spec.windows(tile)) for tile in _by_cost(spec.all_tiles())]
        _run(jobs, workers, progress)
        marker = {"fingerprint": fingerprint, "generator": GENERATOR_VERSION, "spec": spec.content()}
        tmp = root / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(marker, indent=1, default=list))
        os.replace(tmp, root / MARKER)
    seconds = time.perf_counter() - t0
    progress(f"built the catalog in {root.resolve()}: {_tiles(len(jobs))} in {seconds:.1f} s")
    return BuildResult(root, fingerprint, True, seconds, len(jobs))


def _build_lock(root: Path, progress: Progress) -> FileLock:
    """The build lock of `root`, held on return; says so when another process holds it first."""
    lock = FileLock(str(root / ".build.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress(f"another process is building the catalog in {root.resolve()}; waiting for it")
        lock.acquire()
    return lock


def _tiles(n: int) -> str:
    """'1 tile', '48 tiles'."""
    return f"{n} tile" if n == 1 else f"{n} tiles"


def _by_cost(tiles: tuple[TileRef, ...]) -> list[TileRef]:
    """Largest jobs first (full 32 m tiles), so the pool ends evenly."""
    return sorted(tiles, key=lambda t: t.resolution != 32)


def _run(jobs: list[tuple[Path, TileRef, tuple[Window, ...]]], workers: int | None, progress: Progress) -> None:
    """Write items in a spawn process pool (or inline for one worker), one progress line per tile written."""
    n = min(workers or os.cpu_count() or 1, len(jobs))
    processes = "in this process" if n <= 1 else f"with {n} worker processes"
    progress(f"writing {_tiles(len(jobs))} of synthetic ArcticDEM (dem and datamask COGs) {processes}")
    if n <= 1:
        for done, job in enumerate(jobs, 1):
            write_item(*job)
            progress(f"wrote {job[1].item_id} ({done} of {len(jobs)})")
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futures = {pool.submit(_write_job, job): job[1].item_id for job in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            progress(f"wrote {futures[future]} ({done} of {len(jobs)})")


def _write_job(job: tuple[Path, TileRef, tuple[Window, ...]]) -> None:
    """Pool entry point (picklable)."""
    write_item(*job)


def write_item(root: Path, tile: TileRef, windows: tuple[Window, ...]) -> None:
    """Write the `dem` and `datamask` COGs of one tile holding data only inside `windows`."""
    pieces = [tile_pixels(tile, w) for w in windows]
    for index, fmt in enumerate(ASSETS):
        dest = root / tile.asset_relpath(fmt.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _write_cog(dest, tile, fmt, [(w, p[index]) for w, p in zip(windows, pieces, strict=True)])


def _write_cog(dest: Path, tile: TileRef, fmt: AssetFormat, pieces: list[tuple[Window, np.ndarray]]) -> None:
    """Place in-memory pieces in a full-size VRT and let GDAL's COG driver copy it (holes are skipped)."""
    files = [_mem_tiff(tile, w, data, fmt) for w, data in pieces]
    try:
        sources = [(w, f.name) for (w, _), f in zip(pieces, files, strict=True)]
        with MemoryFile(_vrt_xml(tile, fmt, sources).encode(), ext=".vrt") as vrt:
            tmp = dest.with_name(dest.name + ".tmp")
            with rasterio.Env(GDAL_NUM_THREADS="1"):
                rasterio.shutil.copy(vrt.name, str(tmp), driver="COG", PREDICTOR=str(fmt.predictor), **COG_OPTIONS)
            os.replace(tmp, dest)
    finally:
        for f in files:
            f.close()


def _mem_tiff(tile: TileRef, window: Window, data: np.ndarray, fmt: AssetFormat) -> MemoryFile:
    """An uncompressed, georeferenced in-memory GTiff holding one piece."""
    mem = MemoryFile(ext=".tif")
    h, w = data.shape
    profile = {"crs": f"EPSG:{EPSG}", "transform": window_transform(window, tile.transform)}
    with mem.open(driver="GTiff", width=w, height=h, count=1, dtype=fmt.dtype, nodata=fmt.nodata, **profile) as ds:
        ds.write(data, 1)
    return mem


def _vrt_xml(tile: TileRef, fmt: AssetFormat, sources: list[tuple[Window, str]]) -> str:
    """VRT of the full tile grid with one SimpleSource per piece; everything else is nodata."""
    rows, cols = tile.shape
    t = tile.transform
    parts = [
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">',
        f"<SRS>EPSG:{EPSG}</SRS>",
        f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
        f'<VRTRasterBand dataType="{fmt.vrt_type}" band="1">',
        f"<NoDataValue>{fmt.nodata!r}</NoDataValue>",
    ]
    for w, name in sources:
        size = f'xSize="{int(w.width)}" ySize="{int(w.height)}"'
        parts += [
            "<SimpleSource>",
            f'<SourceFilename relativeToVRT="0">{escape(name)}</SourceFilename><SourceBand>1</SourceBand>',
            f'<SrcRect xOff="0" yOff="0" {size}/>',
            f'<DstRect xOff="{int(w.col_off)}" yOff="{int(w.row_off)}" {size}/>',
            "</SimpleSource>",
        ]
    parts += ["</VRTRasterBand>", "</VRTDataset>"]
    return "\n".join(parts)
