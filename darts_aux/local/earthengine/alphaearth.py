"""Deterministic stand-in for the AlphaEarth Foundations annual embeddings (`GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`).

The real collection: one image per UTM tile (about 163,840 m square, in that tile's UTM zone) and year 2017-2025,
64 bands `A00` … `A63` that Earth Engine types as `double`, 10 m pixels, each pixel's 64 values a unit vector.
The published values are de-quantised signed bytes: a code q in -127 … 127 stands for sign(q)·(q / 127.5)² (the
COG export in `gs://alphaearth_foundations` stores q itself, -128 meaning no data). Sampled Earth Engine values
(e.g. A00 = -0.17937716262975778 = -(54 / 127.5)², A04 = 0.16000000000000003 = (51 / 127.5)² in float64) are these
doubles, so Earth Engine's own values hold no more than the int8 codes.

The stand-in keeps all of that except the UTM tiling: its native grid is one 10 m grid in EPSG:3413 with pixel
edges on multiples of 10 m (column k = floor(x / 10), row j = floor(y / 10), x and y in metres), so a request on
the ArcticDEM 10 m grid reads native pixels one to one and a test can name the native pixel of every requested
pixel without knowing UTM zone borders. A requested pixel takes the value of the native pixel that contains its
centre (nearest neighbour), whatever the request's CRS.

Each band's value is a pure function of (year, band, k, j):

- Land cover: the native grid is cut into square parcels of `PARCEL` pixels; each parcel has one of `CLASSES`
  classes (the same in every year).
- Each pixel picks one of `VARIANTS` variants of its class and one of `JITTER_ROWS` rows of ±1 code jitter by a
  hash of (k, j, year), so neighbouring pixels, years and bands differ (an off-by-one, a flipped axis, a swapped
  band or a wrong year shows) and no two pixels' vectors repeat by design, while pixels of one parcel stay
  similar, like real embeddings of one field: noisy, not smooth.
- The vector of (year, class, variant) is integer arithmetic on hash bytes (a class direction weighted by
  `CLASS_WEIGHT` plus a per-variant noise direction), normalised to unit length and quantised to the int8 codes
  the real data uses; the pixel's jitter row is added to the codes; the returned values are their
  de-quantisation. So every value is exact in float64, and |‖v‖ − 1| ≤ `UNIT_TOLERANCE` (int8 rounding plus
  jitter; typically below 0.01), as the real vectors are unit length up to their int8 quantisation.
- No data (masked; every band at once): a disc ("lake") in most cells of a `LAKE_CELL`-pixel lattice, its
  radius different every year; whole `TILE`-pixel tiles missing in about one year in `MISSING_TILE_ONE_IN`; and
  everything within `POLE_GAP_RADIUS` of the North Pole (the real coverage stops short of the poles).

Served calls: `ee.ImageCollection(COLLECTION).filterDate(start[, end])` or `.filter(ee.Filter.calendarRange(y, y,
"year"))` (also `ee.Filter.date`, `ee.Date.fromYMD(…).advance(…)`, `ee.Filter.And`), `.mosaic()`, `.select(…)`,
`.mask()`, `.unmask(…)`, `.toFloat()`, `.toDouble()`, and the arithmetic that turns the values back into their codes
on the server (`abs`, `sqrt`, `multiply`, `round`, `signum`, `toInt8`). A year outside `YEARS` leaves an empty
collection, whose mosaic has no bands, so selecting `A00` fails as in Earth Engine ("Image.select: Pattern 'A00'
did not match any bands."). Masked pixels answer 0.0 in every band (no unit vector is all zeros).

The code tables are computed once per year (16,384 vectors) and cached; a pixel costs five hashes and two table
lookups (about 0.2 s for 1000² pixels on this machine, 0.3 s more to expand them to float64).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from darts_aux.local.earthengine.tcvis import mix64

COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
"""The Earth Engine ImageCollection id."""
BANDS: tuple[str, ...] = tuple(f"A{i:02d}" for i in range(64))
"""The 64 band names, in order (the embedding's axes)."""
YEARS: tuple[int, ...] = tuple(range(2017, 2026))
"""Years with an annual image (2017-2025); the collection is empty for any other year."""
DTYPE = np.dtype(np.float64)
"""Band type: Earth Engine reports `double`, and computePixels answers `<f8` fields in an NPY file."""
NATIVE_CRS = "EPSG:3413"
"""CRS of the stand-in's native grid (the real one has one grid per UTM tile)."""
NATIVE_PIXEL = 10.0
"""Native pixel size in metres; pixel edges lie on multiples of it."""
NODATA_CODE = -128
"""The int8 code of a masked pixel in the published COGs (every band at once)."""
QUANT_DIVISOR = 127.5
"""De-quantisation: value = sign(q) · (q / 127.5)² for a code q in -127 … 127."""
UNIT_TOLERANCE = 0.07
"""Bound on |‖v‖ − 1| for a valid pixel's vector: int8 rounding of a unit vector moves it at most
√(Σ(q+½)²)/127.5² ≤ 0.023 and the ±1 jitter at most √(Σ(2|q|+1)²)/127.5² ≤ 0.045 (Σ q² ≤ 8 · 127.5²)."""

PARCEL = 23
"""Parcel edge in native pixels (prime, so chunk borders cut through parcels)."""
CLASSES = 256
"""Number of land-cover classes."""
VARIANTS = 64
"""Number of per-pixel variants of a class's vector."""
JITTER_ROWS = 4096
"""Number of rows of per-band code jitter (each -1, 0 or +1) a pixel picks from."""
CLASS_WEIGHT = 2
"""Weight of the class direction against the per-pixel noise direction (both of equal spread)."""
LAKE_CELL = 157
"""Lattice cell edge in native pixels; each cell holds at most one lake, inside the cell."""
LAKE_RADIUS = (4, 40)
"""Smallest and largest lake radius in native pixels (inclusive); drawn per cell and year."""
LAKE_EMPTY_ONE_IN = 4
"""About one cell in this many has no lake in any year."""
TILE = 16_384
"""Edge of a missing-tile cell in native pixels (163,840 m, the real images' size)."""
MISSING_TILE_ONE_IN = 8
"""About one tile in this many has no data at all in a given year (a different set every year)."""
POLE_GAP_RADIUS = 650_000.0
"""No data within this many metres of the North Pole (north of about 84° N) in any year."""

CLASS_SALT = 0xA11A
"""Hash salts: part of the formula (a re-implementation needs them)."""
VARIANT_SALT = 0xE417
NOISE_SALT = 0x5EED
LAKE_SALT = 0x1A4E
TILE_SALT = 0x711E
JITTER_SALT = 0x7177

Int64Array = npt.NDArray[np.int64]


def native_index(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[Int64Array, Int64Array]:
    """(k, j): column and row of the native pixel containing each EPSG:3413 point (x, y) in metres."""
    k = np.floor(np.asarray(x, dtype=np.float64) / NATIVE_PIXEL).astype(np.int64)
    j = np.floor(np.asarray(y, dtype=np.float64) / NATIVE_PIXEL).astype(np.int64)
    return k, j


def _check_year(year: int) -> int:
    if year not in YEARS:
        raise KeyError(f"the stand-in has no AlphaEarth image for {year}; years are {YEARS[0]}-{YEARS[-1]}")
    return year


def _hash_bytes(words: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.int64]:
    """Sum of the top `count` bytes of each 64-bit word, centred on zero (an integer bell curve)."""
    total = np.zeros(words.shape, dtype=np.int64)
    for byte in range(count):
        total += ((words >> np.uint64(56 - 8 * byte)) & np.uint64(0xFF)).astype(np.int64)
    return total - 255 * count // 2


def direction_components(year: int, klass: Int64Array, variant: Int64Array) -> Int64Array:
    """Integer components (..., 64) of the un-normalised vector of (year, class, variant).

    Component b = CLASS_WEIGHT · g(class, b) + n(year, class, variant, b), with g = the centred sum of the four top
    bytes of mix64(class, b, salt) and n the same of mix64((year · CLASSES + class) · VARIANTS + variant, b, salt'):
    both spread alike (σ ≈ 148) and the arithmetic is exact.
    """
    band = np.arange(64, dtype=np.int64)
    klass, variant = np.asarray(klass)[..., None], np.asarray(variant)[..., None]
    base = _hash_bytes(mix64(klass, band, CLASS_SALT), 4)
    noise = _hash_bytes(mix64((year * CLASSES + klass) * VARIANTS + variant, band, NOISE_SALT), 4)
    return CLASS_WEIGHT * base + noise


def quantise_direction(components: Int64Array) -> npt.NDArray[np.int8]:
    """The int8 codes of the unit vector along integer `components` (..., 64).

    q_b = sign(c_b) · min(round(sqrt(|c_b| / sqrt(Σ c²)) · 127.5), 126): at most 126 in magnitude, so a code plus
    its ±1 jitter stays a valid code. Every step is one correctly rounded IEEE operation on exact inputs, so any
    implementation that follows it gets the same codes.
    """
    squares = np.sum(components * components, axis=-1, keepdims=True)  # exact in int64
    unit = np.abs(components) / np.sqrt(squares.astype(np.float64))
    magnitude = np.minimum(np.rint(np.sqrt(unit) * QUANT_DIVISOR), 126.0)
    return (np.sign(components) * magnitude).astype(np.int8)


@functools.lru_cache(maxsize=len(YEARS))
def code_table(year: int) -> npt.NDArray[np.int8]:
    """The year's codes for every (class, variant), shape (CLASSES · VARIANTS, 64), row = class · VARIANTS + variant."""
    _check_year(year)
    klass, variant = np.divmod(np.arange(CLASSES * VARIANTS, dtype=np.int64), VARIANTS)
    table = quantise_direction(direction_components(year, klass, variant))
    table.setflags(write=False)
    return table


def parcel_class(k: Int64Array, j: Int64Array) -> Int64Array:
    """Land-cover class of the parcel containing native pixel (k, j) (the same every year)."""
    cell = mix64(np.floor_divide(k, PARCEL), np.floor_divide(j, PARCEL), CLASS_SALT)
    return (cell % np.uint64(CLASSES)).astype(np.int64)


def pixel_draw(year: int, k: Int64Array, j: Int64Array) -> tuple[Int64Array, Int64Array]:
    """(variant, jitter row) that native pixel (k, j) shows in `year`: the low and the high bits of one hash."""
    word = mix64(k, j, year, VARIANT_SALT)
    variant = (word % np.uint64(VARIANTS)).astype(np.int64)
    jitter = ((word >> np.uint64(32)) % np.uint64(JITTER_ROWS)).astype(np.int64)
    return variant, jitter


@functools.lru_cache(maxsize=1)
def jitter_table() -> npt.NDArray[np.int8]:
    """Per-band code jitter (JITTER_ROWS, 64): (top byte of mix64(row, band, salt)) mod 3 − 1."""
    row, band = np.arange(JITTER_ROWS, dtype=np.int64)[:, None], np.arange(64, dtype=np.int64)
    table = ((mix64(row, band, JITTER_SALT) >> np.uint64(56)) % np.uint64(3)).astype(np.int8) - np.int8(1)
    table.setflags(write=False)
    return table


def lake_mask(year: int, k: Int64Array, j: Int64Array) -> npt.NDArray[np.bool_]:
    """True where native pixel (k, j) lies in a lake in `year` (squared index distance to the centre ≤ r²).

    Lake centres and which cells have a lake are the same every year; the radius is drawn per cell and year.
    """
    ck, cj = np.floor_divide(k, LAKE_CELL), np.floor_divide(j, LAKE_CELL)
    cell = mix64(ck, cj, LAKE_SALT)
    lo, hi = LAKE_RADIUS
    radius = lo + (mix64(ck, cj, year, LAKE_SALT) % np.uint64(hi - lo + 1)).astype(np.int64)
    room = LAKE_CELL - 2 * hi  # the largest disc stays inside its cell
    ox = hi + ((cell >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.int64) % room
    oy = hi + ((cell >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.int64) % room
    empty = (cell >> np.uint64(60)) % np.uint64(LAKE_EMPTY_ONE_IN) == 0
    dx = k - ck * LAKE_CELL - ox
    dy = j - cj * LAKE_CELL - oy
    return ~empty & (dx * dx + dy * dy <= radius * radius)


def tile_missing(year: int, k: Int64Array, j: Int64Array) -> npt.NDArray[np.bool_]:
    """True where native pixel (k, j) lies in a `TILE` cell that has no data at all in `year`."""
    tile = mix64(np.floor_divide(k, TILE), np.floor_divide(j, TILE), year, TILE_SALT)
    return tile % np.uint64(MISSING_TILE_ONE_IN) == 0


def pole_gap(k: Int64Array, j: Int64Array) -> npt.NDArray[np.bool_]:
    """True where the centre of native pixel (k, j) is within `POLE_GAP_RADIUS` of the pole (no data, any year)."""
    x = (k.astype(np.float64) + 0.5) * NATIVE_PIXEL
    y = (j.astype(np.float64) + 0.5) * NATIVE_PIXEL
    return x * x + y * y < POLE_GAP_RADIUS * POLE_GAP_RADIUS


def valid_mask(year: int, k: Int64Array, j: Int64Array) -> npt.NDArray[np.bool_]:
    """True where native pixel (k, j) has data in `year`."""
    _check_year(year)
    k, j = np.broadcast_arrays(np.asarray(k, dtype=np.int64), np.asarray(j, dtype=np.int64))
    return ~(lake_mask(year, k, j) | tile_missing(year, k, j) | pole_gap(k, j))


def embedding_codes(
    year: int, k: npt.ArrayLike, j: npt.ArrayLike
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    """int8 codes (..., 64) of native pixels (k, j) in `year` (`NODATA_CODE` where masked) and the valid mask (...).

    `k` and `j` broadcast together (a row of k and a column of j is the cheap case). KeyError for a year without
    an image.
    """
    _check_year(year)
    k, j = np.broadcast_arrays(np.asarray(k, dtype=np.int64), np.asarray(j, dtype=np.int64))
    valid = valid_mask(year, k, j)
    variant, jitter = pixel_draw(year, k, j)
    codes = np.take(code_table(year), parcel_class(k, j) * VARIANTS + variant, axis=0)
    codes += np.take(jitter_table(), jitter, axis=0)  # |code| ≤ 126, so no wrap-around
    codes[~valid] = NODATA_CODE
    return codes, valid


_DEQUANTISED = np.array(
    [
        math.nan if q == NODATA_CODE else math.copysign((q / QUANT_DIVISOR) ** 2, q)
        for q in (*range(128), *range(-128, 0))
    ],
    dtype=np.float64,
)
"""Value of each code, indexed by the code's byte read as uint8 (NaN for the no-data code)."""


def dequantise(codes: npt.NDArray[np.int8]) -> npt.NDArray[np.float64]:
    """The published mapping: sign(q) · (q / 127.5)² as float64; NaN for `NODATA_CODE`."""
    return _DEQUANTISED[np.asarray(codes, dtype=np.int8).view(np.uint8)]


def quantise(values: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """The int8 code of each de-quantised value (its exact inverse, also from float32 copies); NaN → `NODATA_CODE`.

    q = sign(v) · round(sqrt(|v|) · 127.5). A float32 copy of a value is within 6e-8 of it, far less than the half
    step between codes, so the code, and with it the exact double, is recovered from float32 too.
    """
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    v = np.where(missing, 0.0, v)
    codes = (np.sign(v) * np.rint(np.sqrt(np.abs(v)) * QUANT_DIVISOR)).astype(np.int8)
    codes[missing] = NODATA_CODE
    return codes


def alphaearth_pixels(
    year: int, x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Band values (..., 64) at EPSG:3413 points (x, y) in `year` (0.0 where masked) and the valid mask (...).

    The values are what computePixels answers for the year's mosaic: float64, one field per band.
    """
    codes, valid = embedding_codes(year, *native_index(x, y))
    values = dequantise(codes)
    values[~valid] = 0.0
    return values, valid


def year_start_millis(year: int) -> int:
    """`system:time_start` of the year's image: 1 January 00:00 UTC, in milliseconds since 1970."""
    return (np.datetime64(f"{year:04d}-01-01", "ms") - np.datetime64("1970-01-01", "ms")).astype(np.int64).item()
