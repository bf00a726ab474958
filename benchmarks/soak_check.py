"""The end check of a soak run: every manifest row against an independent oracle, and `darts-aux verify`.

For each chunk the manifest of any soaked data directory lists, the oracle is computed once and compared with
every data directory's copy of the chunk:

- ArcticDEM: `rasterio.merge` of the catalog's COG files (the tiles overlapping the chunk; nodata −9999 → NaN),
  read from disk by GDAL, independent of darts-aux's windowed HTTP reads and merges;
- TCVIS: the Earth Engine stand-in's formula (`tcvis_pixels`) at the chunk's pixel centres.

A row promises the pixels of the items it lists as applied (all of the chunk's items when `full`). A pixel is
**lost** when a promised value is missing or different in the store, **wrong** when the store holds a value the
full oracle does not have there. A partial row may lag the store (a writer killed between its commit and its
manifest row), so extra pixels are not counted as long as they are right.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, window_bounds
from darts_aux.local import CatalogSpec, TileRef
from darts_aux.manifest import ChunkRecord, Manifest
from darts_aux.products import Product, arcticdem, tcvis
from darts_aux.store import Cube, cube_exists, cube_paths

Arrays = dict[str, np.ndarray]
TCVIS_BANDS = {"tc_brightness": "TCB_slope", "tc_greenness": "TCG_slope", "tc_wetness": "TCW_slope", "valid": "valid"}
"""Cube variable → band of the stand-in's formula."""


def soaked_products() -> list[Product]:
    """The cubes the writers fill."""
    return [arcticdem(2), arcticdem(32), tcvis()]


@dataclass
class CubeCheck:
    """What comparing one cube of one data directory with the oracles found."""

    data_dir: str
    product: str
    full: int = 0
    partial: int = 0
    lost: int = 0
    wrong: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return self.full + self.partial


@dataclass(frozen=True)
class VerifyResult:
    """`darts-aux verify` of one data directory: exit code and what it printed."""

    data_dir: str
    returncode: int
    output: str
    via: str = "darts-aux verify"
    """The command, or `verify_all` when the command could not reach the data directory."""

    @property
    def ok(self) -> bool:
        """Exit 0, and it looked at cubes (an empty or mistyped data dir must not pass as clean)."""
        return self.returncode == 0 and "all present and readable" in self.output


class Oracles:
    """Expected pixels of a chunk from sources darts-aux does not read them from."""

    def __init__(self, catalog_root: Path, spec: CatalogSpec) -> None:
        self.root = catalog_root
        self.spec = spec

    def tiles(self, product: Product, window: PixelWindow) -> list[TileRef]:
        """Published tiles of the product's resolution whose raster overlaps a window, in id order."""
        left, bottom, right, top = window_bounds(product.extent, window)
        published = set(self.spec.published_item_ids())
        tiles = [t for t in self.spec.tiles(int(product.resolution)) if t.item_id in published]
        return sorted((t for t in tiles if t.bounds[0] < right and t.bounds[2] > left and t.bounds[1] < top
                       and t.bounds[3] > bottom), key=lambda t: t.item_id)

    def expected(self, product: Product, window: PixelWindow, items: Iterable[str] | None = None) -> Arrays:
        """The window's pixels from every source item (None) or from `items` only."""
        if product.merge == "replace":
            return self._tcvis(product, window, items)
        tiles = self.tiles(product, window)
        if items is not None:
            wanted = set(items)
            tiles = [t for t in tiles if t.item_id in wanted]
        return self._mosaic(product, window, tiles)

    def _mosaic(self, product: Product, window: PixelWindow, tiles: list[TileRef]) -> Arrays:
        """rasterio.merge of the tiles' COG files over the window ("first" wins, as in id order)."""
        import rasterio
        from rasterio.merge import merge

        if not tiles:
            return fill_arrays(product, window)
        bounds = window_bounds(product.extent, window)
        out: Arrays = {}
        for variable in product.variables:
            sources = [rasterio.open(self.root / t.asset_relpath(variable.source_asset)) for t in tiles]
            try:
                mosaic, _ = merge(sources, bounds=bounds, res=product.resolution, nodata=variable.source_nodata,
                                  method="first")
            finally:
                for source in sources:
                    source.close()
            band = mosaic[0]
            if band.shape != window.shape:
                raise AssertionError(f"the oracle of {window} came out {band.shape}")
            if np.issubdtype(np.dtype(variable.dtype), np.floating):
                band = np.where(band == variable.source_nodata, np.nan, band)
            out[variable.name] = band.astype(variable.dtype)
        return out

    @staticmethod
    def _tcvis(product: Product, window: PixelWindow, items: Iterable[str] | None) -> Arrays:
        """The stand-in's formula at the window's pixel centres (nothing when the edition is not applied)."""
        from darts_aux.local.earthengine import tcvis_pixels

        if items is not None and product.collection not in set(items):
            return fill_arrays(product, window)
        left, _, _, top = window_bounds(product.extent, window)
        rows, cols = window.shape
        lon = left + (np.arange(cols) + 0.5) * product.resolution
        lat = top - (np.arange(rows) + 0.5) * product.resolution
        pixels = tcvis_pixels(product.collection, lon[None, :], lat[:, None])
        return {name: np.asarray(pixels[band]) for name, band in TCVIS_BANDS.items()}


def fill_arrays(product: Product, window: PixelWindow) -> Arrays:
    """A window with no data: every variable at its fill value."""
    return {v.name: np.full(window.shape, v.fill_value, v.dtype) for v in product.variables}


def present(values: np.ndarray, fill: float | int) -> np.ndarray:
    """Where a variable holds data (not its fill value; NaN-aware)."""
    return ~np.isnan(values) if isinstance(fill, float) and np.isnan(fill) else values != fill


def differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two arrays disagree (two NaNs agree)."""
    if np.issubdtype(a.dtype, np.floating):
        return ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return a != b


def compare(product: Product, stored: Arrays, promised: Arrays, expected: Arrays) -> tuple[int, int]:
    """(lost, wrong) pixels: a pixel counts once whichever of its variables is off."""
    lost = np.zeros(next(iter(expected.values())).shape, bool)
    wrong = np.zeros_like(lost)
    for variable in product.variables:
        got, want, full = stored[variable.name], promised[variable.name], expected[variable.name]
        lost |= present(want, variable.fill_value) & differs(got, want)
        wrong |= present(got, variable.fill_value) & differs(got, full)
    return int(lost.sum()), int((wrong & ~lost).sum())


class CubeReader:
    """Open cubes of one product in several data directories, with their latest manifest rows."""

    def __init__(self, product: Product, data_dirs: Iterable[str]) -> None:
        self.product = product
        self.grid = ChunkGrid(product)
        self.cubes: dict[str, Cube] = {}
        self.rows: dict[str, dict[ChunkId, ChunkRecord]] = {}
        for data_dir in data_dirs:
            if cube_exists(data_dir, product):
                self.cubes[data_dir] = Cube.open(data_dir, product)
                self.rows[data_dir] = Manifest(cube_paths(data_dir, product).manifest, self.grid).latest()

    def chunks(self) -> list[ChunkId]:
        """Every chunk any of the manifests lists, in row-major order."""
        return sorted({c for rows in self.rows.values() for c in rows}, key=lambda c: (c.row, c.col))

    def copies(self, chunk: ChunkId) -> Iterator[tuple[str, ChunkRecord, Cube]]:
        """(data dir, its latest row, its cube) for every data directory that lists the chunk."""
        for data_dir, rows in self.rows.items():
            if chunk in rows:
                yield data_dir, rows[chunk], self.cubes[data_dir]


def check_product(product: Product, data_dirs: list[str], oracles: Oracles) -> list[CubeCheck]:
    """Compare every listed chunk of one product in every data directory with the oracles."""
    reader = CubeReader(product, data_dirs)
    checks = {d: CubeCheck(d, product.key) for d in reader.cubes}
    for chunk in reader.chunks():
        window = reader.grid.window(chunk)
        expected = oracles.expected(product, window)
        all_items = _item_ids(oracles, product, window)
        for data_dir, row, cube in reader.copies(chunk):
            _check_row(checks[data_dir], product, cube, row, window, expected, all_items, oracles)
    return list(checks.values())


def _item_ids(oracles: Oracles, product: Product, window: PixelWindow) -> tuple[str, ...]:
    """The source items a full chunk must list as applied."""
    if product.merge == "replace":
        return (product.collection,)
    return tuple(t.item_id for t in oracles.tiles(product, window))


def _check_row(check: CubeCheck, product: Product, cube: Cube, row: ChunkRecord, window: PixelWindow,
               expected: Arrays, all_items: tuple[str, ...], oracles: Oracles) -> None:
    """Compare one stored chunk with what its manifest row promises."""
    if row.status == "full":
        check.full += 1
        promised = expected
        if sorted(row.items_applied) != sorted(all_items):
            check.problems.append(f"{row.chunk} is full with items {list(row.items_applied)}, "
                                  f"the catalog has {list(all_items)}")
    else:
        check.partial += 1
        same = sorted(row.items_applied) == sorted(all_items)
        promised = expected if same else oracles.expected(product, window, row.items_applied)
    lost, wrong = compare(product, cube.read(window), promised, expected)
    check.lost += lost
    check.wrong += wrong
    if lost or wrong:
        check.problems.append(f"{row.chunk} ({row.status}, items {list(row.items_applied)}): "
                              f"{lost} pixels lost, {wrong} pixels wrong")


def run_verify(data_dir: str, env: dict[str, str]) -> VerifyResult:
    """`darts-aux verify --data-dir DIR` as an operator runs it (the console script of this environment).

    When the command reads an s3:// data dir as a local path (it prints "no cube in s3:/…"), the same check runs
    through the library (`darts_aux.verify.verify_all`), and the result says so.
    """
    command = [str(Path(sys.executable).with_name("darts-aux")), "verify", "--data-dir", data_dir]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    result = VerifyResult(data_dir, done.returncode, (done.stdout + done.stderr).strip())
    if data_dir.startswith("s3://") and "s3:/" + data_dir.removeprefix("s3://") in result.output:
        return verify_in_process(data_dir, cli_said=result.output)
    return result


def verify_in_process(data_dir: str, cli_said: str) -> VerifyResult:
    """What `darts-aux verify` checks, through `darts_aux.verify.verify_all`, printed the same way."""
    from darts_aux.location import as_location
    from darts_aux.verify import verify_all

    lines = []
    for verdict in verify_all(as_location(data_dir)):
        if verdict.ok:
            lines.append(f"{verdict.product.key}: {verdict.checked} chunks checked, all present and readable")
        lines += [f"{verdict.product.key} {p.chunk} ({p.status}): {p.problem}" for p in verdict.problems]
    sound = bool(lines) and all(line.endswith("all present and readable") for line in lines)
    return VerifyResult(data_dir, 0 if sound else 1, "\n".join(lines),
                        via=f"verify_all (the command said: {cli_said.splitlines()[-1]})")
