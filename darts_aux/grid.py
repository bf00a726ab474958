"""Chunk geometry: ROI (+buffer) → pixel window → chunk ids; chunk id → window, GeoBox, footprint."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from affine import Affine
from odc.geo.geobox import GeoBox
from shapely.geometry import Polygon, box

from .errors import EmptyRegionError, InvalidBufferError, OutsideExtentError
from .products import Extent, Product

MAX_BUFFER_PIXELS = 100_000
_EDGE_TOLERANCE = 1e-6  # pixels: absorbs float noise when an ROI edge lies on a cube pixel edge
_CHUNK_ID = r"^r(\d+)c(\d+)$"  # compiled on first use (re caches it)


@dataclass(frozen=True, order=True)
class ChunkId:
    """Row and column of a fill chunk in a cube's chunk grid."""

    row: int
    col: int

    def __str__(self) -> str:
        return f"r{self.row:04d}c{self.col:04d}"

    @classmethod
    def parse(cls, text: str) -> ChunkId:
        """Inverse of str(): 'r0012c0034' → ChunkId(12, 34)."""
        match = re.match(_CHUNK_ID, text)
        if not match:
            raise ValueError(f"not a chunk id: {text!r} (expected like 'r0012c0034')")
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class PixelWindow:
    """A half-open rectangle of cube pixels: rows [row0, row1), cols [col0, col1)."""

    row0: int
    row1: int
    col0: int
    col1: int

    def __str__(self) -> str:
        """'rows 100–200, cols 50–80' (half-open), for log lines and messages."""
        return f"rows {self.row0}–{self.row1}, cols {self.col0}–{self.col1}"

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.row1 - self.row0, self.col1 - self.col0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Numpy/zarr index of the window."""
        return (slice(self.row0, self.row1), slice(self.col0, self.col1))

    @property
    def is_empty(self) -> bool:
        """True when the window holds no pixel."""
        return self.row1 <= self.row0 or self.col1 <= self.col0

    def pad(self, pixels: int) -> PixelWindow:
        """The window grown by `pixels` on every side."""
        return PixelWindow(self.row0 - pixels, self.row1 + pixels, self.col0 - pixels, self.col1 + pixels)

    def clip(self, shape: tuple[int, int]) -> PixelWindow:
        """The part of the window inside a grid of `shape`."""
        rows, cols = shape
        return PixelWindow(
            max(self.row0, 0), min(self.row1, rows), max(self.col0, 0), min(self.col1, cols)
        )

    def intersect(self, other: PixelWindow) -> PixelWindow:
        """The common part of two windows (possibly empty)."""
        return PixelWindow(
            max(self.row0, other.row0), min(self.row1, other.row1),
            max(self.col0, other.col0), min(self.col1, other.col1),
        )

    def relative_to(self, outer: PixelWindow) -> tuple[slice, slice]:
        """Index of this window inside an array holding `outer`."""
        return (
            slice(self.row0 - outer.row0, self.row1 - outer.row0),
            slice(self.col0 - outer.col0, self.col1 - outer.col0),
        )


def extent_geobox(extent: Extent) -> GeoBox:
    """The whole cube grid as an odc-geo GeoBox."""
    return GeoBox(extent.shape, extent.affine, extent.crs)


def window_geobox(extent: Extent, window: PixelWindow) -> GeoBox:
    """The GeoBox of a window of the cube grid (same pixels, same CRS; past 180° for wrapped windows)."""
    return GeoBox(window.shape, extent.affine * Affine.translation(window.col0, window.row0), extent.crs)


def window_parts(extent: Extent, window: PixelWindow) -> list[tuple[PixelWindow, slice]]:
    """The window as parts inside the grid, each with its column slice in the window's array.

    Only a wrapping (global lon/lat) grid has windows that leave it on the east and continue at column 0.
    """
    cols = extent.shape[1]
    if window.col1 <= cols:
        return [(window, slice(0, window.shape[1]))]
    east = PixelWindow(window.row0, window.row1, window.col0, cols)
    west = PixelWindow(window.row0, window.row1, 0, window.col1 - cols)
    return [(east, slice(0, east.shape[1])), (west, slice(east.shape[1], window.shape[1]))]


def window_bounds(extent: Extent, window: PixelWindow) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a window in the cube's CRS."""
    res = extent.resolution
    return (
        extent.x0 + window.col0 * res,
        extent.y0 - window.row1 * res,
        extent.x0 + window.col1 * res,
        extent.y0 - window.row0 * res,
    )


def window_from_bounds(extent: Extent, bounds: tuple[float, float, float, float]) -> PixelWindow:
    """The smallest cube window containing a (left, bottom, right, top) box in the cube's CRS."""
    left, bottom, right, top = bounds
    res = extent.resolution
    return PixelWindow(
        row0=math.floor((extent.y0 - top) / res + _EDGE_TOLERANCE),
        row1=math.ceil((extent.y0 - bottom) / res - _EDGE_TOLERANCE),
        col0=math.floor((left - extent.x0) / res + _EDGE_TOLERANCE),
        col1=math.ceil((right - extent.x0) / res - _EDGE_TOLERANCE),
    )


def bounds_window(extent: Extent, bounds: tuple[float, float, float, float]) -> PixelWindow:
    """The window of a box in the cube's CRS, clipped (or, on a global grid, wrapped) to the grid."""
    window = window_from_bounds(extent, bounds)
    return _wrap(window, extent.shape) if extent.wrap_x else window.clip(extent.shape)


def roi_window(geobox: GeoBox, extent: Extent, buffer: int = 0) -> PixelWindow:
    """The cube window covering `geobox` (any CRS) padded by `buffer` pixels and clipped to the cube."""
    if isinstance(buffer, bool) or not isinstance(buffer, int):
        raise InvalidBufferError(f"buffer must be a whole number of cube pixels, got {buffer!r}.")
    if buffer < 0 or buffer > MAX_BUFFER_PIXELS:
        raise InvalidBufferError(
            f"buffer={buffer} is outside 0…{MAX_BUFFER_PIXELS} cube pixels; pass a non-negative pixel count."
        )
    _check_geobox(geobox)
    bbox = _projected_bbox(geobox, extent)
    if not all(math.isfinite(v) for v in bbox):
        raise EmptyRegionError(f"the geobox cannot be projected to {extent.crs}; pass a geobox over the Arctic.")
    window = window_from_bounds(extent, bbox).pad(buffer)
    clipped = _wrap(window, extent.shape) if extent.wrap_x else window.clip(extent.shape)
    if clipped.is_empty:
        raise OutsideExtentError(
            f"the region {tuple(round(v) for v in bbox)} ({extent.crs}) lies outside the cube extent "
            f"{extent.bounds}; pass a geobox that overlaps it."
        )
    return clipped


def _projected_bbox(geobox: GeoBox, extent: Extent) -> tuple[float, float, float, float]:
    """The geobox's footprint in the cube's CRS as a box; on a global lon/lat grid, unwrapped at ±180°."""
    projected = geobox.extent.to_crs(extent.crs, resolution="auto")
    if not extent.wrap_x or geobox.crs == extent.crs:
        return projected.boundingbox.bbox
    points = [xy for ring in _rings(projected.geom) for xy in ring]
    lons = [x for x, _ in points]
    if max(lons) - min(lons) > 180:  # the outline jumps across the antimeridian: continue east of 180°
        lons = [x + 360 if x < 0 else x for x in lons]
    lats = [y for _, y in points]
    return (min(lons), min(lats), max(lons), max(lats))


def _rings(geom: object) -> list[list[tuple[float, float]]]:
    parts = getattr(geom, "geoms", [geom])
    return [list(p.exterior.coords) for p in parts]


def _wrap(window: PixelWindow, shape: tuple[int, int]) -> PixelWindow:
    """Rows clipped; columns moved so the window starts inside the grid (it may end past its east edge)."""
    rows, cols = shape
    width = min(window.shape[1], cols)
    col0 = window.col0 % cols
    return PixelWindow(max(window.row0, 0), min(window.row1, rows), col0, col0 + width)


def _check_geobox(geobox: object) -> None:
    """Reject anything that is not a non-empty GeoBox with finite, non-zero-area pixels."""
    if not isinstance(geobox, GeoBox):
        raise EmptyRegionError(
            f"expected an odc.geo GeoBox, got {type(geobox).__name__}; build one with GeoBox.from_bbox(...)."
        )
    if geobox.crs is None:
        raise EmptyRegionError("the geobox has no CRS; give it one (e.g. GeoBox.from_bbox(..., crs='EPSG:3413')).")
    if geobox.shape[0] <= 0 or geobox.shape[1] <= 0:
        raise EmptyRegionError(f"the geobox has no pixels (shape {tuple(geobox.shape)}); pass a non-empty geobox.")
    affine = geobox.affine
    if not all(math.isfinite(v) for v in affine[:6]) or affine.determinant == 0:
        raise EmptyRegionError(f"the geobox transform {tuple(affine[:6])} is not finite or has zero area.")


def span_label(chunks: Sequence[ChunkId]) -> str:
    """'r3c4' for one chunk, 'r3c4+12' for thirteen starting at r3c4: names of task runs and commits."""
    return str(chunks[0]) if len(chunks) == 1 else f"{chunks[0]}+{len(chunks) - 1}"


@dataclass(frozen=True)
class ChunkGrid:
    """The grid of fill chunks over a product's extent."""

    product: Product

    @property
    def chunk(self) -> int:
        """Fill chunk side in pixels."""
        return self.product.fill_chunk

    @property
    def shape(self) -> tuple[int, int]:
        """Number of chunk rows and columns."""
        rows, cols = self.product.extent.shape
        return (math.ceil(rows / self.chunk), math.ceil(cols / self.chunk))

    def window(self, chunk: ChunkId) -> PixelWindow:
        """Pixels of a chunk (the last row and column are cut at the cube's edge)."""
        n = self.chunk
        return PixelWindow(chunk.row * n, (chunk.row + 1) * n, chunk.col * n, (chunk.col + 1) * n).clip(
            self.product.extent.shape
        )

    def geobox(self, chunk: ChunkId) -> GeoBox:
        """The chunk's GeoBox on the cube grid."""
        return window_geobox(self.product.extent, self.window(chunk))

    def footprint(self, chunk: ChunkId) -> Polygon:
        """The chunk's outline in the cube's CRS."""
        return box(*window_bounds(self.product.extent, self.window(chunk)))

    def covering(self, chunks: Sequence[ChunkId]) -> PixelWindow:
        """The smallest window holding every one of `chunks` (for one search or one manifest query over all)."""
        windows = [self.window(chunk) for chunk in chunks]
        return PixelWindow(min(w.row0 for w in windows), max(w.row1 for w in windows),
                           min(w.col0 for w in windows), max(w.col1 for w in windows))

    def chunks(self, window: PixelWindow) -> list[ChunkId]:
        """Every chunk a window touches, row-major (both sides of the antimeridian for wrapped windows)."""
        return [c for part, _ in window_parts(self.product.extent, window) for c in self._iter_chunks(part)]

    def chunk_ranges(self, window: PixelWindow) -> list[tuple[int, int, int, int]]:
        """Inclusive (row0, row1, col0, col1) chunk ranges of a window's parts."""
        n = self.chunk
        return [(p.row0 // n, (p.row1 - 1) // n, p.col0 // n, (p.col1 - 1) // n)
                for p, _ in window_parts(self.product.extent, window) if not p.is_empty]

    def _iter_chunks(self, window: PixelWindow) -> Iterator[ChunkId]:
        n = self.chunk
        clipped = window.clip(self.product.extent.shape)
        if clipped.is_empty:
            return
        for row in range(clipped.row0 // n, (clipped.row1 - 1) // n + 1):
            for col in range(clipped.col0 // n, (clipped.col1 - 1) // n + 1):
                yield ChunkId(row, col)
