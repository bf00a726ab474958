"""Windowed reads of ArcticDEM COG tiles over HTTP range requests, mosaicked into one chunk."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from ..errors import SourceDataError
from ..grid import ChunkGrid, ChunkId, PixelWindow
from ..mosaic import fill_gaps, nodata_to_fill
from ..products import Product
from ..retry import RetryPolicy, is_transient
from .base import ChunkPixels, ItemFailure, empty_chunk
from .items import TileItem

log = logging.getLogger(__name__)


def gdal_http_options(timeout: float) -> dict[str, str | int]:
    """GDAL settings for COGs over HTTP: no directory listings, merged ranges, GDAL's own retries off (ours rule)."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": "0",
        "GDAL_HTTP_TIMEOUT": str(int(max(1, timeout))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, min(timeout, 10)))),
        "VSI_CACHE": "FALSE",
        "GDAL_CACHEMAX": 256,
    }


def read_chunk(
    grid: ChunkGrid,
    chunk: ChunkId,
    items: Sequence[TileItem],
    policy: RetryPolicy,
    timeout: float = 30.0,
) -> ChunkPixels:
    """Read each item's part of the chunk (only that window), mosaic in item order; failures are listed, not raised."""
    import rasterio

    started = time.perf_counter()
    product = grid.product
    window = grid.window(chunk)
    result = ChunkPixels(empty_chunk(product, window))
    with rasterio.Env(**gdal_http_options(timeout)):
        for item in sorted(items, key=lambda i: i.id):
            overlap = item.window_on(product).intersect(window)
            if overlap.is_empty:
                continue
            try:
                tiles = policy.call(lambda: _read_item(product, item, overlap), what=f"read of {item.id}")
            except Exception as error:  # noqa: BLE001 - recorded as a failed item, the chunk stays partial
                failure = ItemFailure(item.id, f"{type(error).__name__}: {error}", is_transient(error))
                log.warning("chunk %s: item %s failed after retries: %s", chunk, item.id, failure.reason)
                result.failed.append(failure)
                continue
            target = overlap.relative_to(window)
            for variable in product.variables:
                fill_gaps(result.arrays[variable.name][target], tiles[variable.name], variable.fill_value)
            result.applied.append(item.id)
            result.pixels_read += overlap.shape[0] * overlap.shape[1]
    result.seconds = time.perf_counter() - started
    return result


def _read_item(product: Product, item: TileItem, overlap: PixelWindow) -> dict[str, np.ndarray]:
    """One item's window of every variable's asset, nodata turned into the cube's fill value."""
    from rasterio.windows import Window

    tile_window = item.window_on(product)
    rows, cols = overlap.relative_to(tile_window)
    rio_window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    out = {}
    for variable in product.variables:
        href = item.hrefs[variable.source_asset]
        data, nodata = _read_window(href, rio_window, item, variable.dtype)
        source_nodata = variable.source_nodata if nodata is None else nodata
        out[variable.name] = nodata_to_fill(data, source_nodata, variable.fill_value)
    return out


def _read_window(href: str, window: object, item: TileItem, dtype: str) -> tuple[np.ndarray, float | None]:
    """Open a COG, check it is the tile the item describes, read one window."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(href) as src:
            if src.count < 1 or np.dtype(src.dtypes[0]) != np.dtype(dtype):
                raise SourceDataError(f"{href} holds {src.dtypes[0]!r}, expected {dtype}", source="cog")
            if (src.height, src.width) != item.shape or not src.transform.almost_equals(item.affine, precision=1e-6):
                raise SourceDataError(f"{href} does not have the grid its STAC item {item.id} declares", source="cog")
            data = src.read(1, window=window)
            return data, src.nodata
    except RasterioIOError as error:
        if is_transient(error):
            raise
        raise SourceDataError(f"{href} could not be read as a COG: {error}", source="cog") from error
