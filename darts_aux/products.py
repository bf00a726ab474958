"""The datasets as data: extents, chunking, variables, fills and where each comes from."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from affine import Affine

from .errors import InvalidResolutionError, UnknownEditionError, UnknownTimeStepError

ArcticDEMResolution = Literal[2, 10, 32]
ARCTICDEM_RESOLUTIONS: tuple[ArcticDEMResolution, ...] = (2, 10, 32)
ARCTICDEM_CRS = "EPSG:3413"
SourceKind = Literal["stac-cog", "earth-engine"]
"""How a product's pixels arrive (see `Product.source`)."""
SOURCE_KINDS: tuple[SourceKind, ...] = ("stac-cog", "earth-engine")
StepLabels = str | int | Iterable[str | int] | None
"""Time steps a load or download asks for: one label (2019 or '2019'), several, or None for all."""
STEP_SEPARATOR = "@"
"""Joins a product's key and a time step's label in the key of that step's cube: 'alphaearth-10m@2019'."""


@dataclass(frozen=True)
class Codec:
    """A chunk compressor: blosc (lz4 or zstd, with shuffle) or plain zstd."""

    name: Literal["blosc-lz4", "blosc-zstd", "zstd"]
    level: int
    shuffle: Literal["shuffle", "bitshuffle", "noshuffle"] = "shuffle"


@dataclass(frozen=True)
class Quantisation:
    """A source whose values are de-quantised integer codes: value = sign(q) · (|q| / divisor) ** power.

    The cube stores the codes (one signed byte per value instead of four or eight) and loads return the values as
    float32, NaN for the `nodata` code. Storing the codes is exact: every source value is recovered bit for bit
    (as float64: `decode(codes, "float64")`), and a fill refuses values that are not codes of this mapping.
    AlphaEarth's published int8 embeddings use divisor 127.5, power 2, nodata −128.
    """

    divisor: float
    power: int
    nodata: int

    def table(self, dtype: str = "float32") -> np.ndarray:
        """The value of every int8 code, indexed by the code's byte read as uint8 (NaN for `nodata`)."""
        codes = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64)
        values = np.sign(codes) * (np.abs(codes) / self.divisor) ** self.power
        values[codes == self.nodata] = np.nan
        return values.astype(dtype)

    def decode(self, codes: np.ndarray, dtype: str = "float32") -> np.ndarray:
        """Values of int8 codes (NaN where `nodata`)."""
        return self.table(dtype)[np.asarray(codes, dtype=np.int8).view(np.uint8)]

    def encode(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The int8 code of each valid value (`nodata` elsewhere); ValueError when a value is not a code's value.

        The values may be float64 or float32 copies of the de-quantised doubles: either is within 1e-7 of its
        code's value, far less than half a step between codes, and is checked against that code's value in its own
        type, so nothing that is not exactly a code passes.
        """
        values = np.asarray(values)
        magnitude = np.rint(np.abs(values.astype(np.float64)) ** (1.0 / self.power) * self.divisor)
        magnitude = np.where(valid, np.minimum(magnitude, 127), 0)
        codes = (np.sign(values) * magnitude).astype(np.int8)
        codes[~valid] = self.nodata
        expected = self.table(values.dtype.name)[codes.view(np.uint8)]
        wrong = valid & (expected != values)
        if wrong.any():
            where = tuple(int(i[0]) for i in np.nonzero(wrong))
            raise ValueError(f"value {values[where]!r} at {where} is not a code of sign(q)·(|q|/{self.divisor})^"
                             f"{self.power}")
        return codes


@dataclass(frozen=True, eq=False)
class Variable:
    """One cube variable and the source asset it is copied from.

    Equal when every field is equal, a NaN fill value or nodata counting as equal to NaN: Python 3.13's dataclasses
    compare fields with `==`, under which NaN never equals itself, so two declarations of one cube would differ.
    """

    name: str
    dtype: str
    fill_value: float | int
    """Value of pixels without data in the cube (NaN for floats: 0 m is a real elevation)."""
    source_asset: str
    """The source's name for this variable: a STAC asset key ('stac-cog'), an Earth Engine band ('earth-engine')."""
    source_nodata: float | int
    """The source value meaning no data, used when a COG declares no nodata of its own (a COG's nodata tag wins).

    Pixels holding it become `fill_value` in the cube, so a product needs no mask asset: validity is read from
    the data asset itself. A variable that is its own mask (ArcticDEM's `datamask`) states 0 here and 0 as fill.
    """
    codec: Codec
    quantisation: Quantisation | None = None
    """For a source of de-quantised codes: the cube stores the int8 codes (`dtype` 'int8', `fill_value` the nodata
    code) and loads return float32 values, NaN where masked. None: values are stored as they are."""

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.dtype, _comparable(self.fill_value), self.source_asset, _comparable(self.source_nodata),
                self.codec, self.quantisation)

    @property
    def loaded_dtype(self) -> str:
        """The dtype a load returns: float32 for quantised codes, else the stored dtype."""
        return "float32" if self.quantisation is not None else self.dtype

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variable) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _comparable(value: float | int) -> float | int | str:
    """A fill or nodata value as it compares: NaN as one marker (NaN == NaN is False)."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True)
class Extent:
    """A pixel grid: CRS, top-left corner, pixel size and shape (rows, cols)."""

    crs: str
    x0: float
    y0: float
    resolution: float
    shape: tuple[int, int]
    wrap_x: bool = False
    """True for a global lon/lat grid: regions may cross the antimeridian and continue at column 0."""

    @property
    def affine(self) -> Affine:
        """Pixel → CRS transform of the grid's top-left pixel corner."""
        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        rows, cols = self.shape
        return (self.x0, self.y0 - rows * self.resolution, self.x0 + cols * self.resolution, self.y0)


@dataclass(frozen=True)
class TimeStep:
    """One discrete step of a product's time axis: a label and the half-open date range the source mosaics for it."""

    label: str
    """Path-safe name of the step ('2019'): the step cube's folder and the `@2019` suffix of its key."""
    start: str
    """First day of the step (ISO date, inclusive), also the step's `time` coordinate."""
    end: str
    """Day after the step (ISO date, exclusive)."""


def yearly_steps(first: int, last: int) -> tuple[TimeStep, ...]:
    """One step per calendar year from `first` to `last` (inclusive)."""
    return tuple(TimeStep(str(year), f"{year}-01-01", f"{year + 1}-01-01") for year in range(first, last + 1))


@dataclass(frozen=True)
class Product:
    """A cube: its grid, how it is chunked, its variables and its source collection."""

    key: str
    """Short, path-safe name, e.g. 'arcticdem-32m'; also the cube's folder name."""
    extent: Extent
    fill_chunk: int
    """Pixels per side of the unit of download, commit and completeness: an aligned block of zarr chunks."""
    read_chunk: int
    """Pixels per side of a zarr chunk: the unit a read decodes (divides fill_chunk)."""
    variables: tuple[Variable, ...]
    collection: str
    """Where pixels come from: a STAC collection id, or an Earth Engine ImageCollection id."""
    merge: Literal["fill-gaps", "replace"] = "fill-gaps"
    """How a commit combines new pixels with a chunk: fill only its empty pixels, or replace it whole."""
    source: SourceKind = "stac-cog"
    """How pixels arrive. 'stac-cog': a STAC collection of single-band COG tiles on the cube's grid (same CRS and
    pixel size, aligned to the extent's corner; tiles may overlap), read by HTTP range requests and mosaicked in
    item-id order, a later tile filling only the no-data pixels of earlier ones. 'earth-engine': an Earth Engine
    ImageCollection, mosaicked and computed for exactly each chunk's grid."""
    stac_url: str | None = None
    """The STAC API root of a 'stac-cog' product; None: the configured catalog (DARTS_AUX_STAC_URL, or PGC's tile
    index with DARTS_AUX_DISCOVERY=tile-index)."""
    family: str | None = None
    """The built-in family ('arcticdem', 'tcvis', 'alphaearth'): the product's command-line name, and for the first
    two the Prefect flow that fills a load's window; None for other products. Loads of other families fill through
    the generic `download_chunks` flow."""
    title: str = ""
    """A human-readable name for listings; empty: the key."""
    time_steps: tuple[TimeStep, ...] = ()
    """The product's time axis (e.g. one step per year); empty: no time axis. Each step is stored as a cube of its
    own under the product's folder (`<key>/<label>/`), with its own manifest, claims and commits, so that every
    guarantee of a cube (completeness per chunk, partial stays partial, merges never overwrite) holds per step and
    a load fills only the (chunk, step) pairs it lacks."""
    step: TimeStep | None = None
    """Set on the cube of one time step (see `at`): which step it is; None on a declaration."""
    quicklook_bands: tuple[str, ...] = ()
    """Three float variables a fill's summary artifact and the demo draw as red, green, blue; empty: none."""

    @property
    def display_name(self) -> str:
        """The title, else the key."""
        return self.title or self.key

    @property
    def base_key(self) -> str:
        """The declaration's key: the key without a time step's `@label`."""
        return self.key.split(STEP_SEPARATOR, 1)[0]

    @property
    def folder(self) -> str:
        """The cube's folder inside a data directory: the key, or `<key>/<label>` for one time step's cube."""
        return self.key if self.step is None else f"{self.base_key}/{self.step.label}"

    @property
    def has_time_axis(self) -> bool:
        """True for a declaration with time steps (whose cubes are `at(step)`)."""
        return bool(self.time_steps)

    def at(self, label: str | int) -> Product:
        """The cube of one time step: key `<key>@<label>`, stored under `<key>/<label>/`.

        Raises:
            UnknownTimeStepError: The product has no such step (or no time axis).
        """
        wanted = str(label)
        step = next((s for s in self.time_steps if s.label == wanted), None)
        if step is None:
            labels = ", ".join(s.label for s in self.time_steps)
            raise UnknownTimeStepError(
                f"{self.key} has no time step {label!r}; use one of {labels}." if labels
                else f"{self.key} has no time axis; load it without steps."
            )
        return replace(self, key=f"{self.key}{STEP_SEPARATOR}{step.label}", step=step, time_steps=())

    def steps_for(self, labels: StepLabels) -> tuple[TimeStep, ...]:
        """The steps a load asks for: one label, several, or None for all of them (in the declaration's order).

        Raises:
            UnknownTimeStepError: A label names no step, or none is asked for.
        """
        if labels is None:
            return self.time_steps
        wanted = [labels] if isinstance(labels, (str, int)) else list(labels)
        if not wanted:
            raise UnknownTimeStepError(f"no time step of {self.key} asked for; pass one or more of "
                                       f"{', '.join(s.label for s in self.time_steps)}, or None for all.")
        chosen = {self.at(label).step for label in wanted}
        return tuple(s for s in self.time_steps if s in chosen)

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units."""
        return self.extent.resolution

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes one pixel takes over all variables, uncompressed (5 for ArcticDEM: float32 dem + uint8 mask)."""
        return sum(np.dtype(v.dtype).itemsize for v in self.variables)

    def variable(self, name: str) -> Variable:
        """The variable called `name`."""
        return next(v for v in self.variables if v.name == name)


_NAN = float("nan")  # one object, so that equal products compare equal
_DEM_CODEC = Codec("blosc-lz4", 5, "shuffle")
_MASK_CODEC = Codec("blosc-lz4", 5, "noshuffle")  # one-byte values: shuffling is a no-op, bitshuffle slows decoding
_FILL_CHUNK = 5000  # chosen by measurement: benchmarks/README.md "Storage layout"
_READ_CHUNK = 1000
_ARCTICDEM_FILL_CHUNK = 1000
"""ArcticDEM fills, and records completeness, per zarr chunk: a 10 km ROI at 2 m then fetches 1.3× its blocks' bytes
instead of 3.8× with 5000² fill chunks (benchmarks/README.md "Fill unit")."""


def _arcticdem_variables() -> tuple[Variable, ...]:
    return (
        Variable("dem", "float32", _NAN, "dem", -9999.0, _DEM_CODEC),
        Variable("datamask", "uint8", 0, "datamask", 0, _MASK_CODEC),
    )


def _arcticdem_extent(resolution: int) -> Extent:
    """The 100 km tile grid plus the tiles' buffer (100 m; 96 m at 32 m), so cube and tile pixels coincide."""
    buffer = 96.0 if resolution == 32 else 100.0
    left, bottom = -4_000_000.0 - buffer, -3_400_000.0 - buffer
    right, top = 3_400_000.0 + buffer, 4_100_000.0 + buffer
    shape = (round((top - bottom) / resolution), round((right - left) / resolution))
    return Extent(ARCTICDEM_CRS, left, top, float(resolution), shape)


def arcticdem(resolution: int) -> Product:
    """The ArcticDEM v4.1 mosaic cube at 2, 10 or 32 m (an int: 32.0 would name another cube folder)."""
    choices = ", ".join(map(str, ARCTICDEM_RESOLUTIONS))
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral):
        raise InvalidResolutionError(
            f"the ArcticDEM resolution must be an int, got {resolution!r} ({type(resolution).__name__}); "
            f"use one of {choices}."
        )
    resolution = int(resolution)
    if resolution not in ARCTICDEM_RESOLUTIONS:
        raise InvalidResolutionError(f"ArcticDEM has no {resolution!r} m product; use one of {choices}.")
    return Product(
        key=f"arcticdem-{resolution}m",
        extent=_arcticdem_extent(resolution),
        fill_chunk=_ARCTICDEM_FILL_CHUNK,
        read_chunk=_READ_CHUNK,
        variables=_arcticdem_variables(),
        collection=f"arcticdem-mosaics-v4.1-{resolution}m",
        source="stac-cog",
        family="arcticdem",
        title=f"ArcticDEM v4.1 mosaic, {resolution} m",
    )


def arcticdem_resolution(product: Product) -> ArcticDEMResolution:
    """The resolution of an ArcticDEM cube as the literal the loaders and the flow take (2, 10 or 32)."""
    for resolution in ARCTICDEM_RESOLUTIONS:
        if product.family == "arcticdem" and product.resolution == resolution:
            return resolution
    raise InvalidResolutionError(f"{product.key} is not an ArcticDEM cube; use one of arcticdem(2), arcticdem(10) "
                                 f"or arcticdem(32).")


TCVIS_EDITIONS: tuple[str, ...] = (
    "users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS",
    "users/ingmarnitze/TCTrend_SR_2001-2020_TCVIS",
    "users/ingmarnitze/TCTrend_SR_2003-2022_TCVIS",
    "projects/ee-ingmarnitze/assets/TCTrend_SR_2005-2024_TCVIS",
)
DEFAULT_TCVIS_EDITION = TCVIS_EDITIONS[0]
TCVIS_PIXEL = 0.00026949458523585647  # degrees: 30 m at the equator, the grid of the Earth Engine asset
TCVIS_BANDS: tuple[tuple[str, str], ...] = (
    ("tc_brightness", "TCB_slope"),
    ("tc_greenness", "TCG_slope"),
    ("tc_wetness", "TCW_slope"),
)
VALID_VARIABLE = "valid"
_BAND_CODEC = Codec("blosc-lz4", 5, "noshuffle")


def tcvis_edition_years(edition: str) -> str:
    """'users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS' → '2000-2019'."""
    return edition.split("TCTrend_SR_", 1)[1].removesuffix("_TCVIS")


def _tcvis_extent() -> Extent:
    """The global grid as odc-geo's GeoBox.from_bbox((−180, −90, 180, 90), 4326, pixel) lays it out (upstream's).

    Pixel edges sit on whole multiples of the pixel size from 0°; 1,335,834 × 667,918 px. 360° is not a whole
    number of pixels, so the grid overshoots ±180° by 0.055 px on each side.
    """
    left = math.floor(-180 / TCVIS_PIXEL)
    top = math.ceil(90 / TCVIS_PIXEL)
    shape = (top - math.floor(-90 / TCVIS_PIXEL), math.ceil(180 / TCVIS_PIXEL) - left)
    return Extent("EPSG:4326", left * TCVIS_PIXEL, top * TCVIS_PIXEL, TCVIS_PIXEL, shape, wrap_x=True)


def tcvis(edition: str = DEFAULT_TCVIS_EDITION) -> Product:
    """The TCVIS cube of one edition: Tasseled-Cap trend bands (uint8) plus `valid` (1 where the source has data)."""
    matches = [e for e in TCVIS_EDITIONS if edition in (e, tcvis_edition_years(e))]
    if not matches:
        raise UnknownEditionError(
            f"unknown TCVIS edition {edition!r}; use one of: {', '.join(TCVIS_EDITIONS)} "
            f"(or their years, e.g. '2000-2019'), e.g. via DARTS_AUX_TCVIS_EDITION."
        )
    full = matches[0]
    variables = tuple(Variable(name, "uint8", 0, band, 0, _BAND_CODEC) for name, band in TCVIS_BANDS)
    return Product(
        key=f"tcvis-{tcvis_edition_years(full)}",
        extent=_tcvis_extent(),
        fill_chunk=_FILL_CHUNK,
        read_chunk=_READ_CHUNK,
        variables=(*variables, Variable(VALID_VARIABLE, "uint8", 0, VALID_VARIABLE, 0, _BAND_CODEC)),
        collection=full,
        merge="replace",
        source="earth-engine",
        family="tcvis",
        title=f"TCVIS Tasseled-Cap trends {tcvis_edition_years(full)}",
    )


ALPHAEARTH_COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
"""Earth Engine's annual satellite embeddings (AlphaEarth Foundations): one image per UTM tile and year."""
ALPHAEARTH_BANDS: tuple[str, ...] = tuple(f"A{index:02d}" for index in range(64))
"""The 64 embedding axes; each pixel's 64 values form a unit-length vector, each value in [-1, 1]."""
ALPHAEARTH_YEARS = (2017, 2025)
"""First and last year the collection covers."""
ALPHAEARTH_QUANTISATION = Quantisation(divisor=127.5, power=2, nodata=-128)
"""The published de-quantisation of the embeddings: value = sign(q)·(q / 127.5)², code −128 = no data."""
ALPHAEARTH_RESOLUTION = 10
ALPHAEARTH_QUICKLOOK_BANDS = ("A01", "A16", "A09")
"""Three embedding axes shown as red, green, blue (the choice of Earth Engine's own example for this dataset)."""
_EMBEDDING_CODEC = Codec("blosc-lz4", 5, "noshuffle")  # one-byte codes: see benchmarks/README.md "AlphaEarth storage"


def alphaearth() -> Product:
    """The AlphaEarth annual embeddings on the ArcticDEM 10 m grid (EPSG:3413), one cube per year.

    Each year is the mosaic of that year's images, fetched from Earth Engine for exactly each chunk's grid; masked
    pixels are NaN in every band (a real value is never NaN), so no validity variable is needed. Earth Engine's
    values are de-quantised int8 codes, so the cube stores the codes (exact, a quarter of float32's bytes; see
    `Quantisation`) and loads return float32. A 1000² px chunk (10 km) takes 7 requests of the bands as float32
    (Earth Engine's 48 MiB per request, counting a mask byte per band and pixel). A global EPSG:4326 variant is
    another declaration with another extent.
    """
    first, last = ALPHAEARTH_YEARS
    code = ALPHAEARTH_QUANTISATION.nodata
    variables = tuple(Variable(band, "int8", code, band, code, _EMBEDDING_CODEC, ALPHAEARTH_QUANTISATION)
                      for band in ALPHAEARTH_BANDS)
    return Product(
        key=f"alphaearth-{ALPHAEARTH_RESOLUTION}m",
        extent=_arcticdem_extent(ALPHAEARTH_RESOLUTION),
        fill_chunk=_READ_CHUNK,
        read_chunk=_READ_CHUNK,
        variables=variables,
        collection=ALPHAEARTH_COLLECTION,
        merge="replace",
        source="earth-engine",
        family="alphaearth",
        title="AlphaEarth Foundations annual satellite embeddings, 10 m",
        time_steps=yearly_steps(first, last),
        quicklook_bands=ALPHAEARTH_QUICKLOOK_BANDS,
    )
