"""A benchmark world of ArcticDEM tiles at their real size, built once and cached under `.cache/realsize-catalog`.

    uv run python benchmarks/realsize_world.py build            # the ROI's 2 m tile (72_46_1_1)
    uv run python benchmarks/realsize_world.py build --stage 4  # + the other three 2 m quarters of supertile 72_46
    uv run python benchmarks/realsize_world.py build --stage 10 # + four 10 m tiles (72_46, 72_47, 73_46, 73_47)
    uv run python benchmarks/realsize_world.py build --stage 16 # + the 2 m quarters of those three other supertiles
    uv run python benchmarks/realsize_world.py info             # what is built: sizes, ratios, build times

The tiles are laid out as PGC packages them: PGC's grid (`darts_aux.local.tiles.TileRef`: 2 m quarters of
25,100² px, 10 m supertiles of 10,020² px), the S3 layout of the local catalog, one COG per asset written by
GDAL's COG driver with BigTIFF, LZW, 512 px blocks; `dem` float32 nodata −9999 with the floating-point
predictor and bilinear overviews, `datamask` uint8 nodata 0 without predictor and nearest overviews.

The elevations are fractional Brownian terrain (Hurst exponent 0.8) made by successive refinement on the cube's
own pixel grid: a coarse level of 8 km pixels, each finer level upsampled ×2 (bilinear) plus seeded noise (uniform,
unit variance, scaled) whose spread shrinks by 2^0.8 per level down to 0.15 m at 2 m pixels, then rounded to
1/256 m. The noise of
each level comes from 1024² cells keyed by (seed, level, cell), so a pixel's value is a function of its position on
the grid alone: neighbouring tiles agree in their overlapping buffers, any part can be computed on its own, and
two builds give the same bytes. Without the rounding the low mantissa bits are pure noise and LZW + predictor
reaches only ~1.35 (a 2.5 GB file, more than any real tile); with it, 2.4 at full resolution, a 1.65 GB file
with overviews, within the 1-2 GB of real 2 m tiles. Holes (nodata, as lakes and voids are in the real mosaic)
are where a second, smooth field of km-scale blobs passes a threshold: ~3 % of the area in patches of a few
hundred metres to a few km.

Each tile is computed in strips by two worker processes into raw files on disk (float32 and uint8), which a VRT
hands to the COG driver (two compression threads). Built tiles are recorded in `world.json` with their build
times and sizes; a build skips what is there.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE

WORLD = CACHE / "realsize-catalog"
WORLD_VERSION = "1"
"""Bump when the terrain or the file layout changes: tiles of another version are rebuilt."""
RECORD = "world.json"
SEED = 412_026
HURST = 0.8
SIGMA_2M = 0.15
"""Spread (m) of the finest level's noise at 2 m pixels; coarser levels grow by 2^HURST per level."""
QUANTUM = 256
"""Elevations are rounded to 1/QUANTUM m."""
TOP_PIXEL = 8192.0
"""Pixel size (m) of the coarsest level."""
BASE_ELEVATION = 320.0
CELL = 1024
"""Noise is drawn in cells of CELL² pixels per level, each from its own seeded generator."""
HOLE_TOP_PIXEL = 2048.0
HOLE_MIN_NOISE_PIXEL = 256.0
"""The hole field has noise of equal spread on levels with pixels of HOLE_MIN_NOISE_PIXEL … HOLE_TOP_PIXEL m (and
none below, so blob edges are smooth)."""
HOLE_EVAL_PIXEL = 16.0
"""The hole field is evaluated on pixels of at most this size and repeated onto the tile's pixels."""
HOLE_THRESHOLD = 1.0
"""A pixel is a hole where the hole field exceeds this many of its level spreads (root sum of squares)."""
STRIP = 1024
"""Rows per generation job (aligned to the noise cells of the finest level)."""
DEM_NODATA = -9999.0
MASK_NODATA = 0

SUPERTILE = "72_46"
ROI_TILE = "72_46_1_1"
"""The 2 m quarter holding the 10 km ROI of `common.ROI_2M` in its core."""
STAGES: dict[str, tuple[tuple[str, int], ...]] = {
    "1": ((ROI_TILE, 2),),
    "4": tuple((f"{SUPERTILE}_{r}_{c}", 2) for r in (1, 2) for c in (1, 2)),
    "10": tuple((t, 10) for t in ("72_46", "72_47", "73_46", "73_47")),
    "16": tuple((f"{supertile}_{r}_{c}", 2) for supertile in ("72_47", "73_46", "73_47") for r in (1, 2)
                for c in (1, 2)),
}
"""What each build stage adds: (tile id, resolution)."""

FloatArray = npt.NDArray[np.float32]
Progress = Callable[[str], None]


# -- the terrain: a function of the position on the cube grid -------------------------------------


@dataclass(frozen=True)
class Field:
    """A fractional Brownian field on one resolution's cube grid: its levels and the noise spread of each."""

    stream: int
    """Which random stream (terrain 0, holes 1)."""
    resolution: int
    top: int
    """Index of the coarsest level (pixel size resolution · 2^top)."""
    sigmas: tuple[float, ...]
    """Noise spread per level, finest first (0: that level only upsamples)."""

    @property
    def spread(self) -> float:
        """Root sum of squares of the levels' spreads: the field's scale."""
        return math.sqrt(sum(s * s for s in self.sigmas))


def top_level(resolution: int, top_pixel: float) -> int:
    """The first level whose pixels are at least `top_pixel` metres."""
    return math.ceil(math.log2(top_pixel / resolution))


def terrain_field(resolution: int) -> Field:
    """The elevation field at a resolution: spreads SIGMA_2M · (pixel / 2 m)^HURST on every level."""
    top = top_level(resolution, TOP_PIXEL)
    sigmas = tuple(SIGMA_2M * (resolution * 2**level / 2.0) ** HURST for level in range(top + 1))
    return Field(0, resolution, top, sigmas)


def hole_field(resolution: int) -> Field:
    """The field whose high values are holes: blobs of 0.3-3 km, no detail below HOLE_MIN_NOISE_PIXEL."""
    top = top_level(resolution, HOLE_TOP_PIXEL)
    sigmas = tuple(1.0 if resolution * 2**level >= HOLE_MIN_NOISE_PIXEL else 0.0 for level in range(top + 1))
    return Field(1, resolution, top, sigmas)


@functools.lru_cache(maxsize=48)
def _coarse_cell(stream: int, resolution: int, level: int, ci: int, cj: int) -> FloatArray:
    """One noise cell of a coarse level (kept: neighbouring strips share them)."""
    return _cell(stream, resolution, level, ci, cj)


def _cell(stream: int, resolution: int, level: int, ci: int, cj: int) -> FloatArray:
    """Uniform noise of unit variance on cell (ci, cj) of a level, from a generator seeded by all five keys.

    Uniform rather than normal: 6× cheaper to draw, and the sum over the levels is bell-shaped all the same.
    """
    rng = np.random.default_rng([SEED, stream, resolution, level, ci + 1, cj + 1])
    cell = rng.random((CELL, CELL), dtype=np.float32)
    cell -= np.float32(0.5)
    cell *= np.float32(math.sqrt(12.0))
    return cell


def noise(field: Field, level: int, row0: int, col0: int, height: int, width: int) -> FloatArray:
    """The level's noise on rows row0… and columns col0… of its grid (cells of CELL² pixels)."""
    out = np.empty((height, width), np.float32)
    get = _cell if level == 0 else _coarse_cell
    for ci in range(row0 // CELL, (row0 + height - 1) // CELL + 1):
        r0, r1 = max(row0, ci * CELL), min(row0 + height, (ci + 1) * CELL)
        for cj in range(col0 // CELL, (col0 + width - 1) // CELL + 1):
            c0, c1 = max(col0, cj * CELL), min(col0 + width, (cj + 1) * CELL)
            cell = get(field.stream, field.resolution, level, ci, cj)
            out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = cell[r0 - ci * CELL:r1 - ci * CELL,
                                                                   c0 - cj * CELL:c1 - cj * CELL]
    return out


def upsample2(coarse: FloatArray) -> FloatArray:
    """Bilinear ×2 of pixel centres: fine pixel 2m+k sits at coarse m − 1/4 (k = 0) or m + 1/4 (k = 1).

    The result covers the coarse rows/columns 1 … n−2 (their two fine pixels each); the outer ones only feed it.
    """
    quarter, three = np.float32(0.25), np.float32(0.75)
    h, w = coarse.shape
    rows = np.empty((2 * (h - 2), w), np.float32)
    middle = coarse[1:-1] * three
    np.add(middle, coarse[:-2] * quarter, out=rows[0::2])
    np.add(middle, coarse[2:] * quarter, out=rows[1::2])
    out = np.empty((2 * (h - 2), 2 * (w - 2)), np.float32)
    middle = rows[:, 1:-1] * three
    np.add(middle, rows[:, :-2] * quarter, out=out[:, 0::2])
    np.add(middle, rows[:, 2:] * quarter, out=out[:, 1::2])
    return out


def field_window(field: Field, level: int, row0: int, col0: int, height: int, width: int) -> FloatArray:
    """The field on a window of one level's grid (rows/columns counted from the cube's top-left corner)."""
    if level == field.top:
        return noise(field, level, row0, col0, height, width) * np.float32(field.sigmas[level])
    crow0, ccol0 = row0 // 2 - 1, col0 // 2 - 1
    crow1, ccol1 = (row0 + height - 1) // 2 + 2, (col0 + width - 1) // 2 + 2
    fine = upsample2(field_window(field, level + 1, crow0, ccol0, crow1 - crow0, ccol1 - ccol0))
    r, c = row0 - 2 * (crow0 + 1), col0 - 2 * (ccol0 + 1)
    out = np.ascontiguousarray(fine[r:r + height, c:c + width])
    if field.sigmas[level]:
        out += noise(field, level, row0, col0, height, width) * np.float32(field.sigmas[level])
    return out


def hole_window(resolution: int, row0: int, col0: int, height: int, width: int) -> npt.NDArray[np.bool_]:
    """True where the world has no data, on a window of the resolution's cube grid."""
    field = hole_field(resolution)
    level = max(0, math.floor(math.log2(HOLE_EVAL_PIXEL / resolution)))
    step = 2**level
    r0, c0 = row0 // step, col0 // step
    r1, c1 = (row0 + height - 1) // step + 1, (col0 + width - 1) // step + 1
    coarse = field_window(field, level, r0, c0, r1 - r0, c1 - c0) > np.float32(HOLE_THRESHOLD * field.spread)
    full = coarse.repeat(step, axis=0).repeat(step, axis=1)
    return full[row0 - r0 * step:row0 - r0 * step + height, col0 - c0 * step:col0 - c0 * step + width]


def world_pixels(resolution: int, row0: int, col0: int, height: int,
                 width: int) -> tuple[FloatArray, npt.NDArray[np.uint8]]:
    """(dem with −9999 in holes, datamask 1/0) on a window of the resolution's cube grid."""
    dem = field_window(terrain_field(resolution), 0, row0, col0, height, width)
    dem += np.float32(BASE_ELEVATION)
    np.multiply(dem, np.float32(QUANTUM), out=dem)
    np.round(dem, out=dem)
    np.divide(dem, np.float32(QUANTUM), out=dem)
    holes = hole_window(resolution, row0, col0, height, width)
    dem[holes] = np.float32(DEM_NODATA)
    return dem, (~holes).astype(np.uint8)


# -- tiles: where they sit on the cube grid, and writing them -------------------------------------


def tile_ref(tile_id: str, resolution: int) -> Any:
    """The TileRef of a tile id at a resolution."""
    from darts_aux.local.tiles import TileRef

    return TileRef.parse(tile_id, resolution)  # type: ignore[arg-type]


def grid_offset(tile: Any) -> tuple[int, int]:
    """(row, col) of the tile's top-left pixel on its resolution's cube grid (tile and cube pixels coincide)."""
    from darts_aux.products import arcticdem

    extent = arcticdem(tile.resolution).extent
    left, _, _, top = tile.bounds
    return round((extent.y0 - top) / extent.resolution), round((left - extent.x0) / extent.resolution)


def strips(tile: Any) -> list[tuple[int, int]]:
    """Row ranges of the tile, cut where the cube grid's rows cross a multiple of STRIP (the noise cells)."""
    row_off, _ = grid_offset(tile)
    rows = tile.shape[0]
    cuts = [0, *(c - row_off for c in range((row_off // STRIP + 1) * STRIP, row_off + rows, STRIP)), rows]
    return list(zip(cuts[:-1], cuts[1:]))


def _generate_strip(job: tuple[str, int, str, str, int, int]) -> int:
    """Worker: compute one strip of a tile into its raw files; the count of hole pixels."""
    tile_id, resolution, dem_path, mask_path, r0, r1 = job
    tile = tile_ref(tile_id, resolution)
    rows, cols = tile.shape
    row_off, col_off = grid_offset(tile)
    dem, mask = world_pixels(resolution, row_off + r0, col_off, r1 - r0, cols)
    dem_file = np.memmap(dem_path, np.float32, "r+", shape=(rows, cols))
    mask_file = np.memmap(mask_path, np.uint8, "r+", shape=(rows, cols))
    dem_file[r0:r1] = dem
    mask_file[r0:r1] = mask
    dem_file.flush()
    mask_file.flush()
    return int(mask.size - np.count_nonzero(mask))


@dataclass(frozen=True)
class AssetLayout:
    """How PGC stores one asset."""

    name: str
    dtype: str
    gdal_type: str
    nodata: float
    predictor: int
    overview_resampling: str


ASSETS = (AssetLayout("dem", "float32", "Float32", DEM_NODATA, 3, "BILINEAR"),
          AssetLayout("datamask", "uint8", "Byte", MASK_NODATA, 1, "NEAREST"))


def raw_vrt(tile: Any, asset: AssetLayout, raw: Path) -> str:
    """A VRT reading a raw, row-major file of the tile's pixels, georeferenced as the tile."""
    rows, cols = tile.shape
    t = tile.transform
    size = np.dtype(asset.dtype).itemsize
    return "\n".join([
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">',
        "<SRS>EPSG:3413</SRS>",
        f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
        f'<VRTRasterBand dataType="{asset.gdal_type}" band="1" subClass="VRTRawRasterBand">',
        f"<NoDataValue>{asset.nodata!r}</NoDataValue>",
        f'<SourceFilename relativetoVRT="0">{raw}</SourceFilename>',
        f"<ImageOffset>0</ImageOffset><PixelOffset>{size}</PixelOffset><LineOffset>{size * cols}</LineOffset>",
        "<ByteOrder>LSB</ByteOrder>",
        "</VRTRasterBand>",
        "</VRTDataset>",
    ])


def write_cog(vrt: Path, dest: Path, asset: AssetLayout, threads: int) -> None:
    """Copy the VRT into a COG as PGC writes its tiles (atomically: a temporary name, then renamed)."""
    import rasterio
    import rasterio.shutil

    tmp = dest.with_name(dest.name + ".tmp")
    options = {"BLOCKSIZE": "512", "COMPRESS": "LZW", "BIGTIFF": "YES", "OVERVIEWS": "AUTO",
               "OVERVIEW_RESAMPLING": asset.overview_resampling, "NUM_THREADS": str(threads)}
    if asset.predictor > 1:
        options["PREDICTOR"] = str(asset.predictor)
    with rasterio.Env(GDAL_CACHEMAX=1024, GDAL_VRT_ENABLE_RAWRASTERBAND="YES", GDAL_NUM_THREADS=str(threads)):
        rasterio.shutil.copy(str(vrt), str(tmp), driver="COG", **options)
    os.replace(tmp, dest)


def full_resolution_bytes(path: Path) -> tuple[int, int]:
    """(compressed bytes of the full-resolution blocks, their uncompressed bytes) of a COG."""
    import rasterio

    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        nx, ny = -(-src.width // bw), -(-src.height // bh)
        packed = sum(int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0)
                     for y in range(ny) for x in range(nx))
        return packed, src.width * src.height * np.dtype(src.dtypes[0]).itemsize


def build_tile(root: Path, tile_id: str, resolution: int, workers: int, progress: Progress) -> dict[str, Any]:
    """Compute one tile in strips on `workers` processes, write its two COGs; what it took and made."""
    tile = tile_ref(tile_id, resolution)
    rows, cols = tile.shape
    scratch = root / ".build" / tile.item_id
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    raws = {a.name: scratch / f"{a.name}.raw" for a in ASSETS}
    for asset in ASSETS:
        with open(raws[asset.name], "wb") as handle:
            handle.truncate(rows * cols * np.dtype(asset.dtype).itemsize)
    jobs = [(tile_id, resolution, str(raws["dem"]), str(raws["datamask"]), r0, r1) for r0, r1 in strips(tile)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        holes = sum(pool.map(_generate_strip, jobs))
    generated = time.perf_counter() - started
    progress(f"  {tile.item_id}: {rows:,} × {cols:,} px computed in {generated:.0f} s "
             f"({holes / (rows * cols):.1%} holes)")
    record: dict[str, Any] = {"version": WORLD_VERSION, "tile": tile_id, "resolution": resolution,
                              "shape": [rows, cols], "hole_fraction": holes / (rows * cols),
                              "generate_s": round(generated, 1), "workers": workers, "assets": {}}
    for asset in ASSETS:
        vrt = scratch / f"{asset.name}.vrt"
        vrt.write_text(raw_vrt(tile, asset, raws[asset.name]))
        dest = root / tile.asset_relpath(asset.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_cog(vrt, dest, asset, workers)
        seconds = time.perf_counter() - t0
        packed, raw = full_resolution_bytes(dest)
        size = dest.stat().st_size
        record["assets"][asset.name] = {"cog_s": round(seconds, 1), "file_bytes": size, "full_res_bytes": packed,
                                        "raw_bytes": raw, "full_res_ratio": round(raw / packed, 3)}
        progress(f"  {tile.item_id} {asset.name}: COG written in {seconds:.0f} s, {size / 1e9:.2f} GB "
                 f"(full resolution {raw / packed:.2f}× smaller than raw)")
    shutil.rmtree(scratch, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return record


def read_record(root: Path) -> dict[str, Any]:
    """What `world.json` says is built."""
    try:
        return dict(json.loads((root / RECORD).read_text()))
    except (OSError, ValueError):
        return {}


def is_built(root: Path, tile_id: str, resolution: int, record: dict[str, Any] | None = None) -> bool:
    """Whether a tile of this version is built (recorded, and both files there)."""
    record = read_record(root) if record is None else record
    entry = record.get(tile_ref(tile_id, resolution).item_id)
    tile = tile_ref(tile_id, resolution)
    return bool(entry and entry.get("version") == WORLD_VERSION
                and all((root / tile.asset_relpath(a.name)).exists() for a in ASSETS))


def stage_tiles(stage: str) -> tuple[tuple[str, int], ...]:
    """Every tile up to and including a stage ('1', '4', '10', '16')."""
    order = list(STAGES)
    return tuple(dict.fromkeys(t for name in order[:order.index(stage) + 1] for t in STAGES[name]))


def build_world(root: Path = WORLD, stage: str = "1", workers: int = 2, progress: Progress = print) -> dict[str, Any]:
    """Build every tile of a stage not built yet (a file lock keeps two builds apart); the record."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".build.lock")):
        record = read_record(root)
        for tile_id, resolution in stage_tiles(stage):
            if is_built(root, tile_id, resolution, record):
                continue
            progress(f"building {tile_ref(tile_id, resolution).item_id} in {root} (once; cached) …")
            record[tile_ref(tile_id, resolution).item_id] = build_tile(root, tile_id, resolution, workers, progress)
            tmp = root / (RECORD + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, root / RECORD)
        shutil.rmtree(root / ".build", ignore_errors=True)
    return record


def built_tiles(root: Path = WORLD) -> Iterator[tuple[str, int]]:
    """(tile id, resolution) of every tile built, in stage order."""
    record = read_record(root)
    for tile_id, resolution in stage_tiles(list(STAGES)[-1]):
        if is_built(root, tile_id, resolution, record):
            yield tile_id, resolution


# -- serving it: the project's loopback stack, asset hrefs optionally through a WAN-shaped link -----------


def world_catalog(root: Path = WORLD, files_base: str | None = None, port: int | None = None) -> Any:
    """A LocalCatalog (rustac STAC API + byte-range file gateway with its request log) over the built tiles.

    `files_base` (e.g. a WanProxy's `http://127.0.0.1:PORT` in front of the gateway's `port`) is written into the
    items' asset hrefs instead of the gateway's own address, so every loader reaches the COGs through it.
    """
    from darts_aux.local import CatalogSpec, LocalCatalog
    from darts_aux.local._server import LocalServer

    tiles = list(built_tiles(root))
    spec = CatalogSpec(tiles_2m=tuple(t for t, r in tiles if r == 2), tiles_10m=tuple(t for t, r in tiles if r == 10))

    class WorldCatalog(LocalCatalog):
        run_prefix = "darts-aux-realsize-"

        def start(self) -> WorldCatalog:
            """Serve the tiles as they are: they were built by `build_world`, not by the synthetic generator."""
            if not self.running:
                self.check_port()
            LocalServer.start(self)
            return self

        @property
        def files_url(self) -> str:
            return f"{files_base}/files/" if files_base else super().files_url

    return WorldCatalog(root, spec, port=port)


@contextlib.contextmanager
def served(wan: tuple[float, float] | None = None, root: Path = WORLD) -> Iterator[Any]:
    """The world's catalog running; with `wan` = (rtt s, bytes/s), its asset hrefs lead through a WanProxy."""
    from wan import WanProxy

    from darts_aux.local._procs import free_port

    if wan is None:
        with world_catalog(root) as cat:
            yield cat
        return
    gateway_port = free_port()
    with WanProxy("127.0.0.1", gateway_port, rtt=wan[0], bandwidth=wan[1]) as proxy:
        with world_catalog(root, f"http://127.0.0.1:{proxy.port}", gateway_port) as cat:
            yield cat


def describe(root: Path = WORLD) -> str:
    """One line per built tile: size, compression and build time."""
    lines = []
    for item_id, entry in read_record(root).items():
        dem, mask = entry["assets"]["dem"], entry["assets"]["datamask"]
        lines.append(f"{item_id}: {entry['shape'][0]:,}² px, dem {dem['file_bytes'] / 1e9:.2f} GB "
                     f"(full resolution {dem['full_res_ratio']:.2f}× smaller than raw), datamask "
                     f"{mask['file_bytes'] / 1e6:.1f} MB, {entry['hole_fraction']:.1%} holes; built in "
                     f"{entry['seconds']:.0f} s (compute {entry['generate_s']:.0f} s, dem COG {dem['cog_s']:.0f} s, "
                     f"datamask COG {mask['cog_s']:.0f} s) at load average {entry['load_average']}")
    return "\n".join(lines) or "nothing built yet"


def main(argv: list[str] | None = None) -> int:
    """Build or describe the world."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("build", "info"))
    parser.add_argument("--stage", choices=list(STAGES), default="1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", type=Path, default=WORLD)
    args = parser.parse_args(argv)
    if args.action == "build":
        build_world(args.root, args.stage, args.workers)
    print(describe(args.root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
