"""Synthetic ArcticDEM content as pure functions of EPSG:3413 pixel-centre coordinates.

Every function takes x and y arrays that broadcast together (a row of x and a column of y is the fast
case) and is the single definition used both to write the tiles and, by `expected_pixels`, to say what
a correct mosaic must contain. Because values depend only on coordinates, the overlapping buffers of
neighbouring tiles hold identical values wherever both are valid.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rasterio.windows import Window

from darts_aux.local.spec import SUBTILE_CORNER, SUPERTILE_CORNER, BBox, CatalogSpec, default_spec
from darts_aux.local.tiles import Resolution, TileRef

DEM_NODATA = -9999.0
"""Nodata of the `dem` asset (PGC's value)."""
MASK_NODATA = 0
"""Nodata of the `datamask` asset; valid pixels are 1."""

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def terrain(x: ArrayLike, y: ArrayLike) -> npt.NDArray[np.float32]:
    """Elevation (m) at EPSG:3413 points: km-scale relief plus metre-scale detail, float64 cast to float32.

    Each term is a product of a function of x and a function of y, so a row of x and a column of y
    broadcast cheaply. Values span about -250 … 490 m (some <= 0 m); the finest terms have periods of
    a few metres, so a half-pixel shift or any resampling changes the result.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = (
        120.0
        + 260.0 * (np.sin(x / 23_700.0 + 0.4) * np.cos(y / 17_300.0 - 1.1))
        + 95.0 * (np.sin(x / 6_100.0 - 0.7) * np.sin(y / 8_900.0 + 0.2))
        + 11.3 * (np.cos(x / 870.0 + 0.9) * np.sin(y / 1_130.0 - 0.3))
        + 3.7 * (np.sin(x / 41.3) * np.cos(y / 29.9 + 0.5))
        + 0.731 * (np.cos(x / 5.9 + 0.3) * np.sin(y / 7.3))
        + 0.0371 * (np.sin(x / 1.3) * np.cos(y / 1.1))
    )
    return np.asarray(z, dtype=np.float32)


@dataclass(frozen=True)
class Disc:
    """A circular nodata hole: centre and radius in EPSG:3413 metres."""

    cx: float
    cy: float
    r: float

    def bbox(self) -> BBox:
        """Bounding box of the disc."""
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)


HOLE_CELL = 25_000.0
"""Edge of the lattice cells that each may hold one random hole of 1.5 … 4.5 km radius."""
KEEP_CLEAR: tuple[tuple[float, float], ...] = (SUBTILE_CORNER, SUPERTILE_CORNER)
"""Points whose 2 m data regions get only the small, deliberately placed holes below."""
CLEAR_RADIUS = 6_000.0


def _seam_holes() -> tuple[Disc, ...]:
    """Deliberate holes across tile seams, corners and the coast of the default catalog."""
    sx, sy = SUBTILE_CORNER
    cx, cy = SUPERTILE_CORNER
    return (
        # 2 m / 10 m, around the supertile corner: across the horizontal and vertical seams and the corner.
        Disc(cx + 1_210.5, cy + 35.5, 310.0),
        Disc(cx - 41.0, cy - 1_530.0, 260.0),
        Disc(cx + 65.0, cy - 85.0, 170.0),
        # 2 m, around the subtile corner (seams between the quarters of one supertile).
        Disc(sx - 1_710.0, sy + 20.5, 280.0),
        Disc(sx + 30.5, sy + 1_190.0, 330.0),
        Disc(sx - 55.0, sy + 60.0, 140.0),
        # 32 m: km-sized holes across supertile seams, the coast and a four-tile corner.
        Disc(600_310.0, 3_137_655.0, 3_100.0),
        Disc(630_000.0, 3_099_580.0, 2_600.0),
        Disc(701_500.0, 3_299_100.0, 2_200.0),
        Disc(499_950.0, 3_000_060.0, 1_800.0),
    )


SEAM_HOLES: tuple[Disc, ...] = _seam_holes()


def _unit(*key: object) -> tuple[float, float, float, float]:
    """Four stable pseudo-random numbers in [0, 1) derived from `key` (not Python's salted hash)."""
    digest = hashlib.blake2b(":".join(map(str, key)).encode(), digest_size=32).digest()
    ints = np.frombuffer(digest, dtype="<u8")
    a, b, c, d = (float(v) / 2.0**64 for v in ints)
    return a, b, c, d


def _lattice_hole(i: int, j: int) -> Disc | None:
    """The random hole of lattice cell (i, j), or None (about 45 % of cells have none)."""
    u = _unit("hole", i, j)
    if u[0] >= 0.55:
        return None
    disc = Disc((i + 0.15 + 0.7 * u[1]) * HOLE_CELL, (j + 0.15 + 0.7 * u[2]) * HOLE_CELL, 1_500.0 + 3_000.0 * u[3])
    for px, py in KEEP_CLEAR:
        if math.hypot(disc.cx - px, disc.cy - py) < disc.r + CLEAR_RADIUS:
            return None
    return disc


def holes_in(bbox: BBox) -> Iterator[Disc]:
    """Every hole that intersects `bbox` (lattice holes, then the seam holes)."""
    xmin, ymin, xmax, ymax = bbox
    pad = 4_500.0
    for i in range(math.floor((xmin - pad) / HOLE_CELL), math.floor((xmax + pad) / HOLE_CELL) + 1):
        for j in range(math.floor((ymin - pad) / HOLE_CELL), math.floor((ymax + pad) / HOLE_CELL) + 1):
            disc = _lattice_hole(i, j)
            if disc is not None and _overlaps(disc.bbox(), bbox):
                yield disc
    for disc in SEAM_HOLES:
        if _overlaps(disc.bbox(), bbox):
            yield disc


def hole_mask(x: ArrayLike, y: ArrayLike) -> BoolArray:
    """True where a hole makes every tile nodata; the same for all tiles and resolutions."""
    xa, ya, out = _prepare(x, y)
    if out.size:
        for d in holes_in(_points_bbox(xa, ya)):
            _paint(out, xa, ya, (d.cx - d.r, d.cy - d.r, d.cx + d.r, d.cy + d.r), disc=d)
    return out


def tile_patches(tile: TileRef) -> tuple[BBox, ...]:
    """Nodata rectangles of one tile inside its outer buffer strip, where the neighbour has data.

    Three per edge (about 1-2 km from each end and near the middle), 300-700 m long, covering all or
    part of the buffer depth; positions and sizes are fixed by the item id.
    """
    x0, y0, x1, y1 = tile.nominal_bounds
    b = tile.buffer
    out: list[BBox] = []
    for side in "WESN":
        a0, a1 = (y0, y1) if side in "WE" else (x0, x1)
        for slot in ("start", "mid", "end"):
            u = _unit("patch", tile.item_id, side, slot)
            if slot == "start":
                c = a0 + 900.0 + 1_200.0 * u[0]
            elif slot == "end":
                c = a1 - 900.0 - 1_200.0 * u[0]
            else:
                c = (a0 + a1) / 2 + (u[0] - 0.5) * (a1 - a0) / 4
            h = 150.0 + 200.0 * u[1]
            f0 = 0.0 if u[2] < 0.5 else 0.25
            f1 = 1.0 if u[3] < 0.5 else 0.75
            out.append(_strip_rect(side, (x0, y0, x1, y1), b * f0, b * f1, c - h, c + h))
    return tuple(out)


def _strip_rect(side: str, nominal: BBox, d0: float, d1: float, a0: float, a1: float) -> BBox:
    """Rectangle from d0 to d1 metres outside the nominal edge `side`, from a0 to a1 along it."""
    x0, y0, x1, y1 = nominal
    if side == "E":
        return (x1 + d0, a0, x1 + d1, a1)
    if side == "W":
        return (x0 - d1, a0, x0 - d0, a1)
    if side == "N":
        return (a0, y1 + d0, a1, y1 + d1)
    return (a0, y0 - d1, a1, y0 - d0)


def tile_patch_mask(tile: TileRef, x: ArrayLike, y: ArrayLike) -> BoolArray:
    """True inside this tile's own buffer patches (nodata in this tile only)."""
    xa, ya, out = _prepare(x, y)
    if out.size:
        box = _points_bbox(xa, ya)
        for rect in tile_patches(tile):
            if _overlaps(rect, box):
                _paint(out, xa, ya, rect)
    return out


def written_mask(tile: TileRef, windows: Collection[Window], x: ArrayLike, y: ArrayLike) -> BoolArray:
    """True at pixel centres that fall inside one of the tile's written windows."""
    xa, ya, out = _prepare(x, y)
    x0, _, _, y1 = tile.bounds
    res = float(tile.resolution)
    col = np.floor((xa - x0) / res)
    row = np.floor((y1 - ya) / res)
    for w in windows:
        inside_x = (col >= w.col_off) & (col < w.col_off + w.width)
        inside_y = (row >= w.row_off) & (row < w.row_off + w.height)
        out |= inside_x & inside_y
    return out


def tile_valid_mask(tile: TileRef, windows: Collection[Window], x: ArrayLike, y: ArrayLike) -> BoolArray:
    """True where this tile holds valid data (written, not in a hole, not in its own patches)."""
    return written_mask(tile, windows, x, y) & ~tile_patch_mask(tile, x, y) & ~hole_mask(x, y)


def tile_pixels(tile: TileRef, window: Window) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """What one tile stores in a window: (dem with -9999 nodata, datamask 1/0)."""
    x, y = pixel_centres(tile, window)
    valid = ~(hole_mask(x, y) | tile_patch_mask(tile, x, y))
    dem = terrain(x, y)
    dem[~valid] = DEM_NODATA
    return dem, valid.astype(np.uint8)


def pixel_centres(tile: TileRef, window: Window) -> tuple[FloatArray, FloatArray]:
    """x as a (1, width) row and y as a (height, 1) column of a tile window's pixel centres."""
    x0, _, _, y1 = tile.bounds
    res = float(tile.resolution)
    cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float64)
    rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float64)
    return (x0 + (cols + 0.5) * res)[None, :], (y1 - (rows + 0.5) * res)[:, None]


def expected_pixels(
    resolution: Resolution,
    x: ArrayLike,
    y: ArrayLike,
    spec: CatalogSpec | None = None,
    *,
    items: Collection[str] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """The formula oracle: (dem float32 with NaN, datamask uint8) a full mosaic must hold at pixel centres.

    A pixel is valid when any tile of the catalog that contains it holds valid data there; `items`
    restricts the tiles (e.g. to the published ones), default: every tile of `spec` at `resolution`.
    x and y must be centres of the resolution's pixel grid (the grid all tiles share).
    """
    spec = default_spec() if spec is None else spec
    xa, ya, any_valid = _prepare(x, y)
    box = _points_bbox(xa, ya) if any_valid.size else None
    for tile in spec.tiles(resolution):
        if items is not None and tile.item_id not in items:
            continue
        if box is None or not _overlaps(tile.bounds, box):
            continue
        windows = spec.windows(tile)
        any_valid |= written_mask(tile, windows, xa, ya) & ~tile_patch_mask(tile, xa, ya)
    valid = any_valid & ~hole_mask(xa, ya)
    dem = np.where(valid, terrain(xa, ya), np.float32(np.nan)).astype(np.float32)
    return dem, valid.astype(np.uint8)


def _prepare(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray, BoolArray]:
    """float64 views of x and y plus an all-False mask of their broadcast shape."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    return xa, ya, np.zeros(np.broadcast_shapes(xa.shape, ya.shape), dtype=bool)


def _points_bbox(x: FloatArray, y: FloatArray) -> BBox:
    """Bounding box of the points (ignores NaN)."""
    return (float(np.nanmin(x)), float(np.nanmin(y)), float(np.nanmax(x)), float(np.nanmax(y)))


def _overlaps(a: BBox, b: BBox) -> bool:
    """Whether two closed boxes intersect."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _paint(out: BoolArray, x: FloatArray, y: FloatArray, rect: BBox, disc: Disc | None = None) -> None:
    """OR a rectangle (xmin <= x < xmax, ymin <= y < ymax) or a disc into `out`, in place.

    When x is a (1, W) row and y an (H, 1) column only the sub-block under the shape is computed.
    """
    if x.ndim == 2 and y.ndim == 2 and x.shape[0] == 1 and y.shape[1] == 1 and out.shape == (y.shape[0], x.shape[1]):
        cols = np.flatnonzero((x[0] >= rect[0]) & (x[0] <= rect[2]))
        rows = np.flatnonzero((y[:, 0] >= rect[1]) & (y[:, 0] <= rect[3]))
        if cols.size == 0 or rows.size == 0:
            return
        cs, rs = slice(cols[0], cols[-1] + 1), slice(rows[0], rows[-1] + 1)
        out[rs, cs] |= _shape_mask(x[:, cs], y[rs, :], rect, disc)
    else:
        out |= _shape_mask(x, y, rect, disc)


def _shape_mask(x: FloatArray, y: FloatArray, rect: BBox, disc: Disc | None) -> BoolArray:
    """Membership of points in a half-open rectangle or an open disc."""
    if disc is not None:
        return np.asarray((x - disc.cx) ** 2 + (y - disc.cy) ** 2 < disc.r * disc.r)
    return np.asarray((x >= rect[0]) & (x < rect[2]) & (y >= rect[1]) & (y < rect[3]))
