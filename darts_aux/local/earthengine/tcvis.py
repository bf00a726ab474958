"""Deterministic stand-in TCVIS data: band values and masks as pure functions of lon/lat.

The value of a requested pixel is the value of the TCVIS pixel that contains the requested pixel's centre
(nearest neighbour, like Earth Engine for a grid at native resolution). TCVIS pixels have edges on whole
multiples of `TCVIS_PIXEL` from 0° (column k spans [k·P, (k+1)·P), row j spans [j·P, (j+1)·P) in latitude);
longitudes are wrapped to [-180, 180) first, so grids that run past ±180° continue on the other side.

- `TCB_slope` and `TCG_slope` are linear in (k, j) modulo 256 with coefficients chosen so that all eight
  neighbours of a pixel differ: an off-by-one, a flipped axis or a transposed grid shows.
- `TCW_slope` is a random byte per column XOR one per row (both seeded by the edition): no shift or flip
  reproduces it.
- Each edition adds its own offsets, so editions never agree everywhere.
- No data ("lakes", mask 0, band values 0 in an NPY answer): one disc per lattice cell of `LAKE_CELL`
  pixels in most cells, radius per cell and edition; the cell size is prime, so chunk borders of any
  usual chunk size cut through lakes. South of `FOOTPRINT_SOUTH` there is no data at all.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TCVIS_PIXEL = 0.00026949458523585647
"""Pixel size in degrees (30 m at the equator), as in the Earth Engine assets."""
EDITIONS: tuple[str, ...] = (
    "users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS",
    "users/ingmarnitze/TCTrend_SR_2001-2020_TCVIS",
    "users/ingmarnitze/TCTrend_SR_2003-2022_TCVIS",
    "projects/ee-ingmarnitze/assets/TCTrend_SR_2005-2024_TCVIS",
)
"""The ImageCollection ids the local Earth Engine knows (written out here on purpose, not imported)."""
BANDS: tuple[str, ...] = ("TCB_slope", "TCG_slope", "TCW_slope")
"""Bands of every edition's mosaic, uint8."""
VALID = "valid"
"""Name of the 0/1 validity band `tcvis_pixels` adds."""
LAKE_CELL = 157
"""Lattice cell edge in pixels; each cell holds at most one lake, entirely inside the cell."""
LAKE_RADIUS = (6, 60)
"""Smallest and largest lake radius in pixels (inclusive)."""
LAKE_EMPTY_ONE_IN = 4
"""About one cell in this many has no lake."""
FOOTPRINT_SOUTH = 40.0
"""No edition has data south of this latitude (whole chunks without data)."""

_LINEAR = ((37, 102), (74, 29))
"""(a, b) per linear band: one odd, one twice an odd number, so a + b and a - b are odd (units modulo 256)."""


def edition_index(edition: str) -> int:
    """Position of `edition` in `EDITIONS`; KeyError for an unknown id."""
    try:
        return EDITIONS.index(edition)
    except ValueError:
        raise KeyError(edition) from None


def wrap_lon(lon: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Longitudes folded into [-180, 180)."""
    lon = np.asarray(lon, dtype=np.float64)
    inside = (lon >= -180.0) & (lon < 180.0)
    return np.where(inside, lon, np.mod(lon + 180.0, 360.0) - 180.0)


def pixel_index(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(k, j): the TCVIS column and row index of the pixel that contains each (lon, lat)."""
    k = np.floor(wrap_lon(lon) / TCVIS_PIXEL).astype(np.int64)
    j = np.floor(np.asarray(lat, dtype=np.float64) / TCVIS_PIXEL).astype(np.int64)
    return k, j


def mix64(*parts: npt.NDArray[np.int64] | int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of integer arrays (splitmix64 finaliser over a weighted sum), broadcast together."""
    acc = np.zeros(np.broadcast_shapes(*(np.shape(p) for p in parts)), dtype=np.uint64)
    weights = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
    with np.errstate(over="ignore"):
        for part, weight in zip(parts, weights, strict=False):
            acc = acc ^ (np.asarray(part, dtype=np.int64).astype(np.uint64) * np.uint64(weight))
            acc = (acc ^ (acc >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            acc = (acc ^ (acc >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            acc = acc ^ (acc >> np.uint64(31))
    return acc


def lake_mask(edition: str, k: npt.NDArray[np.int64], j: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """True where pixel (k, j) lies in a lake of `edition` (squared distance of the pixel indices <= r²).

    `k` and `j` broadcast together; lake parameters are computed once per lattice cell, not per pixel.
    """
    e = edition_index(edition)
    uck, ick = np.unique(np.floor_divide(k, LAKE_CELL), return_inverse=True)
    ucj, icj = np.unique(np.floor_divide(j, LAKE_CELL), return_inverse=True)
    ick, icj = ick.reshape(np.shape(k)), icj.reshape(np.shape(j))
    cell = mix64(uck[None, :], ucj[:, None])  # (cells in j, cells in k)
    lo, hi = LAKE_RADIUS
    radius = lo + (mix64(uck[None, :], ucj[:, None], e + 1) % np.uint64(hi - lo + 1)).astype(np.int64)
    room = LAKE_CELL - 2 * radius  # centre offsets keep the disc inside its cell
    ox = radius + ((cell >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.int64) % room
    oy = radius + ((cell >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.int64) % room
    empty = (cell >> np.uint64(60)) % np.uint64(LAKE_EMPTY_ONE_IN) == 0
    r2 = np.where(empty, -1, radius * radius).astype(np.int32)
    lk = (k - uck[ick] * LAKE_CELL).astype(np.int32)  # position inside the cell, 0 … LAKE_CELL-1
    lj = (j - ucj[icj] * LAKE_CELL).astype(np.int32)
    dx = lk - ox.astype(np.int32)[icj, ick]
    dy = lj - oy.astype(np.int32)[icj, ick]
    return dx * dx + dy * dy <= r2[icj, ick]


def _byte_table(index: npt.NDArray[np.int64], *salt: int) -> npt.NDArray[np.uint8]:
    """One pseudo-random byte per integer of `index` (same shape)."""
    return (mix64(index, *salt) >> np.uint64(56)).astype(np.uint8)


def tcvis_pixels(edition: str, lon: npt.ArrayLike, lat: npt.ArrayLike) -> dict[str, npt.NDArray[np.uint8]]:
    """Bands TCB_slope, TCG_slope, TCW_slope (0 where masked) and `valid` (0/1) at pixel centres (lon, lat).

    `lon` and `lat` broadcast together (a row of lon and a column of lat is the cheap case); KeyError for an
    edition not in `EDITIONS`. Every array has the broadcast shape.
    """
    e = edition_index(edition)
    lat = np.asarray(lat, dtype=np.float64)
    k, j = pixel_index(lon, lat)
    shape = np.broadcast_shapes(k.shape, j.shape)
    valid = lake_mask(edition, k, j)
    np.logical_not(valid, out=valid)
    valid &= lat >= FOOTPRINT_SOUTH
    out: dict[str, npt.NDArray[np.uint8]] = {}
    for number, (band, (a, b)) in enumerate(zip(BANDS, _LINEAR, strict=False)):
        along_k = ((a * k + 59 * e) % 256).astype(np.uint8)
        along_j = ((b * j + 11 * number) % 256).astype(np.uint8)
        out[band] = along_k + along_j  # uint8 addition wraps modulo 256
    out[BANDS[2]] = _byte_table(k, e + 101, 1) ^ _byte_table(j, e + 101, 2)
    zero = np.uint8(0)
    for band in BANDS:
        out[band] = np.where(valid, np.broadcast_to(out[band], shape), zero)
    out[VALID] = valid.astype(np.uint8)
    return out
