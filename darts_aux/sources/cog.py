"""Windowed reads of ArcticDEM COG tiles over HTTP range requests, mosaicked into one chunk.

Retries come from the one retry policy, at two levels. GDAL retries each range request that fails with 429,
5xx, a reset or a timeout (`GDAL_HTTP_MAX_RETRY`, `GDAL_HTTP_RETRY_DELAY`). What still fails, and what GDAL does
not retry (a body cut short, a header read that broke off), the policy retries in small units: opening a file,
then reading one row of COG blocks at a time, so a retry repeats one or two range requests rather than a whole
tile. After a failure the file is reopened past GDAL's /vsicurl/ cache, which would replay a failed open or keep
the part of a cut-short range that did arrive. A range request of a file server that stays down is so sent at
most (retries + 1)² times; once the policy gives up, the item is listed as failed and nothing above (the chunk's
download, a Prefect task) reads it again in the same fill.

A failure is classified before it leaves this module: `TransientSourceError` (the server misbehaved; once the
retries are used up the item is listed as failed and the chunk stays partial) or `SourceDataError` (the file
can never be read: not a GeoTIFF, not tiled, truncated, another grid; raised, so nothing is written).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import SourceDataError, TransientSourceError
from ..grid import ChunkGrid, ChunkId, PixelWindow
from ..mosaic import fill_gaps, nodata_to_fill
from ..products import Product
from ..retry import RetryPolicy, causes, is_transient
from . import blocks
from .base import ChunkPixels, ItemFailure, empty_chunk
from .blocks import BlockGrid, BlockKey
from .hrefs import check_redirects
from .items import TileItem

if TYPE_CHECKING:
    import httpx
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

log = logging.getLogger(__name__)
T = TypeVar("T")
SOURCE = "cog"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HTTP_TROUBLE = re.compile(
    r"HTTP response code: ?(429|5\d\d)|CURL error|timed out|connection (reset|refused|closed)|"
    r"reset by peer|transfer closed|recv failure|send failure|empty reply|couldn't connect",
    re.IGNORECASE,
)
_HTTP_CODE = re.compile(r"HTTP response code: ?(\d{3})")
FIX_HINT = ("report the item to the catalog's maintainers, or point DARTS_AUX_STAC_URL at a catalog whose assets "
            "are cloud-optimised GeoTIFFs")


def gdal_http_options(timeout: float, retries: int = 0, retry_delay: float = 1.0) -> dict[str, str | int]:
    """GDAL settings for COGs over HTTP: no directory listings, merged ranges, each range request retried."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": str(retries),
        "GDAL_HTTP_RETRY_DELAY": f"{retry_delay:g}",
        "GDAL_HTTP_TIMEOUT": str(int(max(1, timeout))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, min(timeout, 10)))),
        "VSI_CACHE": "FALSE",
        # Load a tile's block offsets and sizes whole when it is opened. Loaded lazily, a cut-short read of
        # them makes libtiff report blocks as absent, and GDAL then fills them with nodata without failing.
        "GTIFF_USE_DEFER_STRILE_LOADING": "NO",
        "GDAL_CACHEMAX": 256,
    }


def read_chunk(
    grid: ChunkGrid,
    chunk: ChunkId,
    items: Sequence[TileItem],
    policy: RetryPolicy,
    timeout: float = 30.0,
    scope: str = "",
) -> ChunkPixels:
    """Read each item's part of the chunk (only that window), mosaic in item order.

    Blocks read for one chunk are kept a short while for the neighbouring chunks of the same `scope` (the data
    directory), which need the blocks along their shared edge (see `blocks`).

    Items whose reads still fail transiently after the retries are listed in `failed` (the chunk stays partial);
    an item whose data can never be read raises SourceDataError.
    """
    import rasterio

    started = time.perf_counter()
    product = grid.product
    window = grid.window(chunk)
    overlaps = [(item, item.window_on(product).intersect(window)) for item in sorted(items, key=lambda i: i.id)]
    overlaps = [(item, overlap) for item, overlap in overlaps if not overlap.is_empty]
    # the first item is read straight into the chunk: when it covers all of it, there is nothing to pre-fill
    result = ChunkPixels(_unfilled(product, window) if overlaps and overlaps[0][1] == window
                         else empty_chunk(product, window))
    with rasterio.Env(**gdal_http_options(timeout, policy.retries, policy.base_delay)):
        for item, overlap in overlaps:
            target = overlap.relative_to(window)
            # the first item lands on an empty chunk, so it is read straight into it; later ones only fill its gaps
            into = None if result.applied else {name: array[target] for name, array in result.arrays.items()}
            try:
                tiles = read_item(product, item, overlap, policy, timeout, into, scope)
            except SourceDataError:
                raise
            except Exception as error:
                if not is_transient(error):
                    raise
                if into is not None:  # rows read before the failure must not stay behind without the item
                    for variable in product.variables:
                        into[variable.name][...] = variable.fill_value
                failure = ItemFailure(item.id, f"{type(error).__name__}: {error}", True, source="cog")
                log.warning("chunk %s: item %s failed after retries: %s", chunk, item.id, failure.reason)
                result.failed.append(failure)
                continue
            if into is None:
                for variable in product.variables:
                    fill_gaps(result.arrays[variable.name][target], tiles[variable.name], variable.fill_value)
            result.applied.append(item.id)
            result.pixels_read += overlap.shape[0] * overlap.shape[1]
    result.seconds = time.perf_counter() - started
    return result


def _unfilled(product: Product, window: PixelWindow) -> dict[str, np.ndarray]:
    """Arrays of a chunk's shape, not initialised: for an item that writes every pixel (or a failure resets them)."""
    return {v.name: np.empty(window.shape, dtype=v.dtype) for v in product.variables}


def read_item(product: Product, item: TileItem, overlap: PixelWindow, policy: RetryPolicy,
              timeout: float, into: Mapping[str, np.ndarray] | None = None, scope: str = "") -> dict[str, np.ndarray]:
    """One item's window of every variable's asset, nodata turned into the cube's fill value.

    With `into` (an array per variable, of the overlap's shape) the pixels are read into those arrays.
    """
    from rasterio.windows import Window

    rows, cols = overlap.relative_to(item.window_on(product))
    window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    out = {}
    for variable in product.variables:
        href = item.hrefs[variable.source_asset]
        target = None if into is None else into[variable.name]
        data, nodata = read_asset(href, window, item, variable.dtype, product, policy, timeout, target, scope)
        source_nodata = variable.source_nodata if nodata is None else nodata
        out[variable.name] = nodata_to_fill(data, source_nodata, variable.fill_value)
    return out


def read_asset(href: str, window: Window, item: TileItem, dtype: str, product: Product, policy: RetryPolicy,
               timeout: float, out: np.ndarray | None = None, scope: str = "") -> tuple[np.ndarray, float | None]:
    """One COG's window: checked, then read one row of blocks at a time (into `out`, or a new array).

    Each row fetches only the blocks no recent read of the same scope fetched (`blocks.SHARED`), in runs of
    adjacent blocks, each run retried on its own; the window's part of every block is then copied into place.
    """
    cog = kept_cog(href, timeout, scope)
    grid, nodata = cog.retried(policy, lambda: cog.check(item, dtype, product))
    data = np.empty((int(window.height), int(window.width)), dtype=dtype) if out is None else out
    row0, col0 = int(window.row_off), int(window.col_off)
    row1, col1 = row0 + int(window.height), col0 + int(window.width)
    read_run = partial(_read_block_run, cog, policy, grid)
    for block_row in grid.rows(row0, row1):
        keys = [(scope, href, block_row, col) for col in grid.cols(col0, col1)]
        for key, block in blocks.SHARED.row(keys, read_run).items():
            _paste(block, key, grid, data, (row0, col0, row1, col1))
    return data, nodata


MAX_KEPT_PER_THREAD = 8
"""Open COG handles one thread keeps between chunks (a fill's neighbouring chunks read the same few tiles)."""
_kept = threading.local()


def kept_cog(href: str, timeout: float, scope: str) -> CogFile:
    """This thread's open handle of a COG, kept between the chunks it reads (GDAL handles are not shared by threads).

    Opening a COG costs a header read and a parse of its directories: a fill of 1000² px chunks opened each tile
    twice per chunk, a fifth of its download time. A handle is kept at most `blocks.TTL_SECONDS` (so a file replaced
    on the server is seen again), closed after any failure (`CogFile.opened`), and dropped with its thread (the
    fill's download pool) or when the thread keeps MAX_KEPT_PER_THREAD others.
    """
    kept: OrderedDict[tuple[str, str, float], CogFile] = getattr(_kept, "cogs", None) or OrderedDict()
    _kept.cogs = kept
    key = (scope, href, timeout)
    cog = kept.pop(key, None)
    if cog is not None and time.monotonic() - cog.created > blocks.TTL_SECONDS:
        cog.close()
        cog = None
    kept[key] = cog = cog or CogFile(href, timeout)
    while len(kept) > MAX_KEPT_PER_THREAD:
        kept.popitem(last=False)[1].close()
    return cog


def _forget_kept_in_child() -> None:
    """A forked child must not use its parent's GDAL handles: it opens its own."""
    global _kept
    _kept = threading.local()


os.register_at_fork(after_in_child=_forget_kept_in_child)


def _read_block_run(cog: CogFile, policy: RetryPolicy, grid: BlockGrid, run: list[BlockKey]) -> list[np.ndarray]:
    """Adjacent blocks of one block row in one read (retried), cut into one array per block."""
    from rasterio.windows import Window

    block_row, first, last = run[0][2], run[0][3], run[-1][3]
    col_off, row_off, width, height = grid.run_window(block_row, first, last)
    part = Window(col_off, row_off, width, height)
    pixels = cog.retried(policy, partial(cog.read, part), part)
    step = grid.block_width
    return [pixels[:, i * step:(i + 1) * step] for i in range(last - first + 1)]


def _paste(block: np.ndarray, key: BlockKey, grid: BlockGrid, data: np.ndarray,
           window: tuple[int, int, int, int]) -> None:
    """Copy the part of one block inside the window (row0, col0, row1, col1) into its place in `data`."""
    row0, col0, row1, col1 = window
    top, left = key[2] * grid.block_height, key[3] * grid.block_width
    r0, r1 = max(row0, top), min(row1, top + block.shape[0])
    c0, c1 = max(col0, left), min(col1, left + block.shape[1])
    data[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = block[r0 - top:r1 - top, c0 - left:c1 - left]


class CogFile:
    """A COG over HTTP: opened once and kept open while its reads succeed, reopened afresh after a failure.

    After a failed read GDAL's file handle stays failed, and its /vsicurl/ cache may hold the failure (a failed
    open) or the part of a cut-short range that did arrive; so once anything failed, the handle is dropped and the
    next attempt opens the file past that cache (which also drops the URL's cache entries).
    """

    def __init__(self, href: str, timeout: float) -> None:
        self.href = href
        self.timeout = timeout
        self.stale = False
        """Whether GDAL's cache may hold a failure for this URL."""
        self.created = time.monotonic()
        self._src: DatasetReader | None = None
        self._checked: dict[tuple[str, str, str], tuple[BlockGrid, float | None]] = {}

    @contextmanager
    def opened(self) -> Iterator[DatasetReader]:
        """The open file for one attempt; an open failure comes out classified, any failure drops the handle."""
        if self._src is None:
            self._src = self._open()
        try:
            yield self._src
        except BaseException:
            self.close()
            raise

    def _open(self) -> DatasetReader:
        import rasterio
        from rasterio.errors import RasterioIOError

        check_redirects(self.href, self.timeout, SOURCE, FIX_HINT)  # before GDAL: its libcurl follows ftp:// too
        fresh = self.stale
        with uncached(self.href) if fresh else nullcontext():
            try:
                src = rasterio.open(self.href)
            except RasterioIOError as error:
                self.stale = True
                raise open_failure(self.href, error) from error
        self.stale = False
        return src

    def close(self) -> None:
        """Close the handle (the next attempt opens the file again, and checks it again)."""
        self._checked.clear()
        if self._src is not None:
            self._src.close()
            self._src = None

    def check(self, item: TileItem, dtype: str, product: Product) -> tuple[BlockGrid, float | None]:
        """Check the file is the tile the item describes; its block layout and nodata value (once per open handle)."""
        key = (item.id, dtype, product.key)
        if self._src is not None and key in self._checked:
            return self._checked[key]
        with self.opened() as src:
            check_tile(src, self.href, item, dtype, product)
            block_height, block_width = src.block_shapes[0]
            found = BlockGrid(src.height, src.width, block_height, block_width), src.nodata
        self._checked[key] = found
        return found

    def read(self, part: Window, out: np.ndarray | None = None) -> np.ndarray:
        """One window of band 1 (into `out`, an array of the window's shape, when given).

        Read with rasterio's `_read`, the band read that `read()` itself ends in, because `read()` first asks GDAL
        for the band's mask flags with the GIL held. The first ask reads the file's other directories over HTTP,
        and it can wait there for bytes that another thread is downloading. If that thread's GDAL error
        handler (rasterio's, in Python) then needs the GIL, both threads wait forever. `_read` does its I/O
        with the GIL released and never asks for masks: nodata is handled here (`nodata_to_fill`).
        """
        from rasterio.errors import RasterioIOError

        with self.opened() as src:
            target = np.empty((int(part.height), int(part.width)), src.dtypes[0]) if out is None else out
            try:
                src._read([1], target[np.newaxis], part, target.dtype)
                return target
            except RasterioIOError as error:
                self.stale = True
                raise TransientSourceError(f"reading {self.href} failed: {error}", source=SOURCE) from error

    def retried(self, policy: RetryPolicy, attempt: Callable[[], T], part: Window | None = None) -> T:
        """`attempt` retried by the policy; once the retries are used up, blame the file when it is at fault."""
        try:
            return policy.call(attempt, what=f"{'read' if part else 'open'} of {self.href}")
        except TransientSourceError as error:
            verdict = self.diagnose(error, part)
            if verdict is None:
                raise
            raise verdict from error

    def diagnose(self, error: BaseException, part: Window | None) -> SourceDataError | None:
        """SourceDataError when a failure that did not come from the server is the file's own (checked once)."""
        if http_trouble(error):
            return None
        if part is None:
            return not_a_geotiff(self.href, probe(self.href, "bytes=0-1023", self.timeout))
        try:
            with self.opened() as src:
                end = declared_end(src, part)
        except TransientSourceError:
            return None
        answer = probe(self.href, "bytes=0-0", self.timeout)
        size = None if isinstance(answer, Exception) else content_size(answer)
        if size is None or end <= size:
            return None
        return SourceDataError(f"{self.href} is truncated: its tiles reach byte {end:,} but the file has {size:,} "
                               f"bytes; {FIX_HINT}.", source=SOURCE)


@contextmanager
def uncached(href: str) -> Iterator[None]:
    """Open `href` past GDAL's /vsicurl/ cache (which replays a failed open); its cache entry goes on close."""
    import rasterio

    with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=f"/vsicurl/{href}"):
        yield


def check_tile(src: DatasetReader, href: str, item: TileItem, dtype: str, product: Product) -> None:
    """SourceDataError unless the file is a tiled GeoTIFF of the item's dtype, CRS and pixel grid."""
    if src.count < 1 or np.dtype(src.dtypes[0]) != np.dtype(dtype):
        raise SourceDataError(f"{href} holds {src.dtypes[0]!r} pixels, item {item.id} should hold {dtype}; "
                              f"{FIX_HINT}.", source=SOURCE)
    if src.crs is not None and src.crs != product.extent.crs:
        raise SourceDataError(f"{href} is in {src.crs}, the {product.key} cube in {product.extent.crs}; "
                              f"{FIX_HINT}.", source=SOURCE)
    if (src.height, src.width) != item.shape or not src.transform.almost_equals(item.affine, precision=1e-6):
        raise SourceDataError(f"{href} does not have the pixel grid its STAC item {item.id} declares; {FIX_HINT}.",
                              source=SOURCE)
    block_height, block_width = src.block_shapes[0]
    if block_width >= src.width and block_height < src.height:
        raise SourceDataError(
            f"{href} is a striped GeoTIFF ({block_height}-row strips), not a cloud-optimised (tiled) one: a window "
            f"read would fetch whole rows of the tile; {FIX_HINT}.", source=SOURCE)


def http_trouble(error: BaseException) -> bool:
    """Whether GDAL's error chain reports a server or transport failure (5xx, 429, curl errors, timeouts)."""
    return any(_HTTP_TROUBLE.search(str(link)) for link in causes(error))


def open_failure(href: str, error: BaseException) -> Exception:
    """Why a COG could not be opened: an HTTP 4xx means the asset cannot be fetched, anything else may pass."""
    code = _HTTP_CODE.search(" ".join(str(link) for link in causes(error)))
    if code is not None and 400 <= int(code.group(1)) < 500 and code.group(1) != "429":
        return SourceDataError(f"{href} answers HTTP {code.group(1)}: the item lists an asset that cannot be "
                               f"fetched; {FIX_HINT}.", source=SOURCE)
    # "not recognized as being in a supported file format" also follows a header read that broke off
    return TransientSourceError(f"opening {href} failed: {error}", source=SOURCE)


def not_a_geotiff(href: str, answer: httpx.Response | Exception) -> SourceDataError | None:
    """SourceDataError when the file's first bytes are there and are not a TIFF header."""
    if isinstance(answer, Exception) or answer.status_code == 429 or answer.status_code >= 500:
        return None
    if answer.status_code not in (200, 206):
        return SourceDataError(f"{href} answers HTTP {answer.status_code}: the item lists an asset that cannot be "
                               f"fetched; {FIX_HINT}.", source=SOURCE)
    if answer.content[:4] in TIFF_MAGIC:
        return None
    kind = answer.headers.get("content-type", "no content type")
    return SourceDataError(f"{href} is not a GeoTIFF: the server sent {kind} starting with {answer.content[:16]!r}; "
                           f"{FIX_HINT}.", source=SOURCE)


def declared_end(src: DatasetReader, window: Window) -> int:
    """The end (byte offset) of the last block of band 1 that the window needs, from the TIFF directory."""
    height, width = src.block_shapes[0]
    rows = range(int(window.row_off) // height, math.ceil((window.row_off + window.height) / height))
    cols = range(int(window.col_off) // width, math.ceil((window.col_off + window.width) / width))
    end = 0
    for row, col in itertools.product(rows, cols):
        offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
        size = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)
        if offset and size:
            end = max(end, int(offset) + int(size))
    return end


def probe(href: str, byte_range: str, timeout: float) -> httpx.Response | Exception:
    """One range request for diagnosis (the answer, or the transport error)."""
    import httpx

    try:
        return httpx.get(href, headers={"Range": byte_range}, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        return error


def content_size(answer: httpx.Response) -> int | None:
    """The file's total size from a range answer (Content-Range), or a whole answer's length."""
    total = answer.headers.get("content-range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    if answer.status_code == 200:
        return len(answer.content)
    return None
