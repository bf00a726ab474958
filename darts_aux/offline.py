"""Offline loads: which chunks of a region the cube has never held, and the error that says how to prefetch them.

A compute node without internet reads with `offline=True` (or DARTS_AUX_OFFLINE=1): chunks the manifest lists,
full or partial, are read as they are; a chunk with no manifest row was never fetched, and no source may be asked
for it. Nothing here imports a source, Prefect or the settings.
"""

from __future__ import annotations

import shlex

import numpy as np

from .errors import InvalidRequestError, OfflineError
from .grid import ChunkGrid, ChunkId, PixelWindow, window_bounds
from .location import DataLocation
from .manifest import Manifest
from .products import DEFAULT_TCVIS_EDITION, Product
from .store import cube_exists, cube_paths


def check_offline(offline: object) -> bool:
    """`offline` as a bool; a string such as 'false' would silently mean True."""
    if not isinstance(offline, (bool, np.bool_)):
        raise InvalidRequestError(
            f"offline must be True (read only what the cube holds) or False (download what is missing), "
            f"got {offline!r}."
        )
    return bool(offline)


def missing_chunks(data_dir: DataLocation, product: Product, window: PixelWindow) -> list[ChunkId]:
    """The window's chunks never fetched (no manifest row), or with source reads that failed.

    A partial chunk whose source simply has no data there is complete as it is; one whose reads failed lacks
    pixels the source has, and an offline load must not pass its gaps off as no data.
    """
    grid = ChunkGrid(product)
    chunks = grid.chunks(window)
    if not cube_exists(data_dir, product):
        return chunks
    latest = Manifest(cube_paths(data_dir, product).manifest, grid).latest(window)
    return [chunk for chunk in chunks if chunk not in latest or latest[chunk].items_failed]


def require_fetched(data_dir: DataLocation, product: Product, window: PixelWindow) -> None:
    """Raise OfflineError when any chunk of the window was never fetched (reads only the manifest)."""
    missing = missing_chunks(data_dir, product, window)
    if missing:
        raise offline_error(data_dir, product, window, missing)


def offline_error(data_dir: DataLocation, product: Product, window: PixelWindow,
                  missing: list[ChunkId]) -> OfflineError:
    """The error of an offline load: how many chunks are missing, and the command and call that prefetch them."""
    total = len(ChunkGrid(product).chunks(window))
    bounds = missing_bounds(product, window, missing)
    noun = "chunk" if total == 1 else "chunks"
    return OfflineError(
        f"{len(missing)} of {total} {noun} of the {product.key} cube this region needs were never fetched "
        f"(or reads of them failed), and "
        f"offline loads (offline=True or DARTS_AUX_OFFLINE=1) download nothing; prefetch them on a machine with "
        f"internet with {prefetch_hint(product, data_dir, bounds)}, then load again.",
        missing=len(missing),
    )


def prefetch_hint(product: Product, data_dir: DataLocation, bounds: tuple[float, ...]) -> str:
    """The command and call that prefetch a box: `darts-aux fetch` and download_<family> for the built-in families,
    a load that may download for other products."""
    if product.family is None:
        box = ", ".join(_number(v) for v in bounds)
        return (f"`load({product.key!r}, GeoBox.from_bbox(({box}), {product.extent.crs!r}, "
                f"resolution={_number(product.resolution)}), {str(data_dir)!r})`")
    return f"`{fetch_command(product, data_dir, bounds)}` or `{download_call(product, data_dir, bounds)}`"


def missing_bounds(product: Product, window: PixelWindow, missing: list[ChunkId]) -> tuple[float, ...]:
    """(left, bottom, right, top) in the cube's CRS of the smallest box holding the missing chunks.

    On the global lon/lat grid a window across the antimeridian continues past the grid's east edge; chunks of
    its western part are counted there too, so the box stays small (it continues past 180°).
    """
    grid, cols = ChunkGrid(product), product.extent.shape[1]
    windows = []
    for chunk in missing:
        w = grid.window(chunk)
        if window.col1 > cols and w.col1 <= window.col0:  # west of the antimeridian, continued east of it
            w = PixelWindow(w.row0, w.row1, w.col0 + cols, w.col1 + cols)
        windows.append(w)
    box = PixelWindow(min(w.row0 for w in windows), max(w.row1 for w in windows),
                      min(w.col0 for w in windows), max(w.col1 for w in windows))
    return window_bounds(product.extent, box)


def family(product: Product) -> str:
    """'arcticdem', 'tcvis' or 'alphaearth': the product's name on the command line and in download_<name>."""
    return product.family or product.key


def fetch_command(product: Product, data_dir: DataLocation, bounds: tuple[float, ...]) -> str:
    """The `darts-aux fetch` command line that fills a box of a cube."""
    name = family(product)
    default = name == "arcticdem" or product.collection == DEFAULT_TCVIS_EDITION
    edition = "" if default else f"DARTS_AUX_TCVIS_EDITION={shlex.quote(product.collection)} "
    resolution = f" --resolution {_number(product.resolution)}" if name == "arcticdem" else ""
    year = f" --year {product.step.label}" if product.step is not None else ""
    box = " ".join(_number(v) for v in bounds)
    return (f"{edition}darts-aux fetch {name}{resolution}{year} --bbox {box} --crs {product.extent.crs} "
            f"--data-dir {shlex.quote(str(data_dir))}")


def download_call(product: Product, data_dir: DataLocation, bounds: tuple[float, ...]) -> str:
    """The Python call that fills a box of a cube (for the default TCVIS edition, or the one set in the env)."""
    name = family(product)
    box = ", ".join(_number(v) for v in bounds)
    resolution = f", {_number(product.resolution)}" if name == "arcticdem" else ""
    years = f", years={product.step.label}" if product.step is not None else ""
    return f"download_{name}(({box}), {str(data_dir)!r}{resolution}, crs={product.extent.crs!r}{years})"


def _number(value: float) -> str:
    """A coordinate exactly as Python reads it back: 639904 for whole numbers, the shortest repr otherwise."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
