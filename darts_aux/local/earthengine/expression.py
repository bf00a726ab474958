"""Evaluate the serialised expression graph of a computePixels request for a few image algorithms.

The Cloud API form is `{"values": {id: ValueNode}, "result": id}`; a ValueNode is one of constantValue,
integerValue, arrayValue, dictionaryValue, functionInvocationValue, valueReference or argumentReference.
Images are lazy: a tuple of bands, each knowing its name and pixel type and how to compute (values, mask)
on a `Raster`, so the request size is checked before any pixel is computed.
"""

from __future__ import annotations

import calendar
import datetime
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from darts_aux.local.earthengine import alphaearth
from darts_aux.local.earthengine.errors import EEError, invalid
from darts_aux.local.earthengine.grid import GEOGRAPHIC_CRS, transformer
from darts_aux.local.earthengine.tcvis import BANDS, EDITIONS, tcvis_pixels

Array = npt.NDArray[Any]
Mask = npt.NDArray[np.bool_]


@dataclass
class Raster:
    """Where bands are computed: pixel-centre x (width,) and y (height, 1) in `crs`, plus a per-request memo."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    crs: str = GEOGRAPHIC_CRS
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.y.shape[0], self.x.shape[0])

    def coordinates(self, crs: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Pixel centres in `crs`, broadcastable to `shape`: the grid's own (x, y), else 2-D arrays; inf off the map."""
        if crs == self.crs:
            return self.x, self.y
        key = ("coordinates", crs)
        if key not in self.memo:
            x, y = np.broadcast_arrays(self.x, self.y)
            tx, ty = transformer(self.crs, crs).transform(x, y)
            self.memo[key] = (np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64))
        return self.memo[key]

    def edition(self, edition: str) -> dict[str, npt.NDArray[np.uint8]]:
        """The synthetic TCVIS bands of `edition` on this raster (computed once per request)."""
        key = ("tcvis", edition)
        if key not in self.memo:
            self.memo[key] = tcvis_pixels(edition, *self.coordinates(GEOGRAPHIC_CRS))
        return self.memo[key]

    def embeddings(self, years: tuple[int, ...]) -> tuple[npt.NDArray[np.int8], Mask]:
        """The stand-in AlphaEarth mosaic of `years` on this raster: int8 codes (h, w, 64) and the valid mask.

        Like Earth Engine's mosaic, later images lie on top and earlier ones show through their masked pixels;
        the collection is in year order. Computed once per request.
        """
        key = ("alphaearth", years)
        if key not in self.memo:
            x, y = self.coordinates(alphaearth.NATIVE_CRS)
            x, y = np.broadcast_arrays(x, y)
            on_map = np.isfinite(x) & np.isfinite(y)
            k, j = alphaearth.native_index(np.where(on_map, x, 0.0), np.where(on_map, y, 0.0))
            codes, valid = alphaearth.embedding_codes(years[-1], k, j)
            for year in reversed(years[:-1]):
                below, below_valid = alphaearth.embedding_codes(year, k, j)
                fill = below_valid & ~valid
                codes[fill] = below[fill]
                valid |= below_valid
            valid &= on_map
            codes[~valid] = alphaearth.NODATA_CODE
            self.memo[key] = (codes, valid)
        return self.memo[key]


Compute = Callable[[Raster], tuple[Array, Mask]]


@dataclass(frozen=True)
class Band:
    """One lazy image band: name, numpy pixel type, and how to compute (values, mask)."""

    name: str
    dtype: np.dtype[Any]
    compute: Compute

    def renamed(self, name: str) -> Band:
        """The same band under another name."""
        return Band(name, self.dtype, self.compute)


@dataclass(frozen=True)
class Image:
    """A lazy image: an ordered tuple of bands."""

    bands: tuple[Band, ...]

    @property
    def names(self) -> list[str]:
        """Band names in order."""
        return [b.name for b in self.bands]


@dataclass(frozen=True)
class ImageCollection:
    """A loaded ImageCollection: a TCVIS edition (only its id matters) or AlphaEarth with the years it still holds."""

    asset_id: str
    years: tuple[int, ...] = ()
    """AlphaEarth: the annual images left after filtering, in collection (year) order."""

    @property
    def filterable(self) -> bool:
        """True for the collection whose images carry dates (AlphaEarth)."""
        return self.asset_id == alphaearth.COLLECTION


# -- graph decoding ---------------------------------------------------------------------------------------


def evaluate(expression: Any) -> Any:
    """Evaluate a serialised expression (`{"values", "result"}`) to an Image, ImageCollection or plain value."""
    if not isinstance(expression, Mapping) or "values" not in expression or "result" not in expression:
        raise invalid("Invalid expression: expected an object with 'values' and 'result'.")
    values = expression["values"]
    if not isinstance(values, Mapping):
        raise invalid("Invalid expression: 'values' must be an object.")
    return _Graph(values).value(str(expression["result"]))


class _Graph:
    """Memoised evaluation of the value nodes of one expression."""

    def __init__(self, nodes: Mapping[str, Any]) -> None:
        self.nodes = nodes
        self.done: dict[str, Any] = {}
        self.active: set[str] = set()

    def value(self, ref: str) -> Any:
        """The value of node `ref` (each node evaluated once)."""
        if ref in self.done:
            return self.done[ref]
        if ref not in self.nodes:
            raise invalid(f"Invalid expression: unknown value reference {ref!r}.")
        if ref in self.active:
            raise invalid(f"Invalid expression: cyclic value reference {ref!r}.")
        self.active.add(ref)
        result = self.decode(self.nodes[ref])
        self.active.discard(ref)
        self.done[ref] = result
        return result

    def decode(self, node: Any) -> Any:
        """Decode one ValueNode."""
        if not isinstance(node, Mapping) or len(node) != 1:
            raise invalid(f"Invalid expression node: {node!r}")
        kind, body = next(iter(node.items()))
        if kind == "constantValue":
            return body
        if kind == "integerValue":
            return int(body)
        if kind == "valueReference":
            return self.value(str(body))
        if kind == "arrayValue":
            return [self.decode(v) for v in body.get("values", [])]
        if kind == "dictionaryValue":
            return {k: self.decode(v) for k, v in body.get("values", {}).items()}
        if kind == "functionInvocationValue":
            return self.invoke(body)
        if kind in ("argumentReference", "functionDefinitionValue", "bytesValue"):
            raise invalid(f"The local Earth Engine does not evaluate {kind} nodes (no map() or custom functions).")
        raise invalid(f"Invalid expression node kind {kind!r}.")

    def invoke(self, body: Mapping[str, Any]) -> Any:
        """Call a built-in algorithm with decoded arguments."""
        name = body.get("functionName")
        if not isinstance(name, str):
            raise invalid("The local Earth Engine only invokes algorithms by functionName.")
        algorithm = ALGORITHMS.get(name)
        if algorithm is None:
            raise invalid(f"The local Earth Engine does not implement the algorithm '{name}'.")
        args = {k: self.decode(v) for k, v in body.get("arguments", {}).items()}
        return algorithm(name, args)


# -- algorithms -------------------------------------------------------------------------------------------

Algorithm = Callable[[str, dict[str, Any]], Any]
ALGORITHMS: dict[str, Algorithm] = {}


def _algorithm(*names: str) -> Callable[[Algorithm], Algorithm]:
    def register(fn: Algorithm) -> Algorithm:
        for name in names:
            ALGORITHMS[name] = fn
        return fn

    return register


def _image(fn: str, args: dict[str, Any], key: str, *, optional: bool = False) -> Image | None:
    """Argument `key` as an Image, with Earth Engine's type error otherwise."""
    value = args.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, Image):
        actual = type(value).__name__ if value is not None else "none"
        raise invalid(
            f"{fn}, argument '{key}': Invalid type.\nExpected type: Image<unknown bands>.\nActual type: {actual}."
        )
    return value


def _strings(fn: str, args: dict[str, Any], key: str) -> list[str]:
    """Argument `key` as a list of strings (a single string counts as a list of one)."""
    value = args.get(key)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{fn}, argument '{key}': Invalid type.\nExpected type: List<String>.\nActual type: {value!r}.")
    return value


KNOWN_COLLECTIONS = (*EDITIONS, alphaearth.COLLECTION)
"""The ImageCollection ids the local Earth Engine serves."""


@_algorithm("ImageCollection.load")
def _load_collection(fn: str, args: dict[str, Any]) -> ImageCollection:
    asset_id = args.get("id")
    if asset_id not in KNOWN_COLLECTIONS:
        raise invalid(
            f"{fn}: ImageCollection asset '{asset_id}' not found (does not exist or caller does not have access)."
        )
    return ImageCollection(asset_id, alphaearth.YEARS if asset_id == alphaearth.COLLECTION else ())


@_algorithm("Image.load")
def _load_image(fn: str, args: dict[str, Any]) -> Image:
    asset_id = args.get("id")
    if asset_id in KNOWN_COLLECTIONS:
        raise invalid(f"{fn}: Asset '{asset_id}' is not an Image.")
    raise invalid(f"{fn}: Image asset '{asset_id}' not found (does not exist or caller does not have access).")


@_algorithm("ImageCollection.mosaic")
def _mosaic(fn: str, args: dict[str, Any]) -> Image:
    collection = args.get("collection")
    if not isinstance(collection, ImageCollection):
        raise invalid(f"{fn}, argument 'collection': Invalid type.\nExpected type: ImageCollection.")
    if collection.filterable:
        return _embedding_mosaic(collection.years)
    edition = collection.asset_id

    def source(band: str) -> Compute:
        def compute(raster: Raster) -> tuple[Array, Mask]:
            data = raster.edition(edition)
            return data[band], data["valid"].astype(bool)

        return compute

    return Image(tuple(Band(b, np.dtype(np.uint8), source(b)) for b in BANDS))


def _embedding_mosaic(years: tuple[int, ...]) -> Image:
    """The AlphaEarth mosaic of `years`: 64 float64 bands; no bands when no image is left (as in Earth Engine)."""
    if not years:
        return Image(())

    def source(number: int) -> Compute:
        def compute(raster: Raster) -> tuple[Array, Mask]:
            codes, valid = raster.embeddings(years)
            return np.where(valid, alphaearth.dequantise(codes[..., number]), 0.0), valid

        return compute

    return Image(tuple(Band(b, alphaearth.DTYPE, source(n)) for n, b in enumerate(alphaearth.BANDS)))


# -- collection filters and dates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Date:
    """An instant in milliseconds since 1970-01-01T00:00:00Z."""

    millis: int


@dataclass(frozen=True)
class DateRange:
    """[start, end) in milliseconds."""

    start: int
    end: int


@dataclass(frozen=True)
class Filter:
    """A collection filter over an image's `system:time_start`."""

    passes: Callable[[int], bool]


def _utc(millis: int) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(milliseconds=millis)


def _millis(moment: datetime.datetime) -> int:
    return (moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) // datetime.timedelta(milliseconds=1)


def _zone(fn: str, args: dict[str, Any]) -> datetime.tzinfo:
    name = args.get("timeZone")
    if name is None or name in ("UTC", "Etc/UTC", "GMT", "Z"):
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise invalid(f"{fn}: Unknown time zone '{name}'.") from None


def _date(fn: str, args: dict[str, Any], key: str) -> Date:
    value = args.get(key)
    if isinstance(value, Date):
        return value
    raise invalid(f"{fn}, argument '{key}': Invalid type.\nExpected type: Date.\nActual type: {type(value).__name__}.")


def parse_date(value: str, zone: datetime.tzinfo = datetime.UTC) -> int:
    """Milliseconds of an ISO date string ('2020', '2020-01', '2020-01-01', '2020-01-01T08:00', …) in `zone`."""
    text = value.strip()
    if len(text) == 4 and text.isdigit():
        text += "-01-01"
    elif len(text) == 7 and text[4] == "-":
        text += "-01"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return _millis(moment)


@_algorithm("Date")
def _date_of(fn: str, args: dict[str, Any]) -> Date:
    value = args.get("value")
    if isinstance(value, Date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Date(int(value))
    if isinstance(value, str):
        try:
            return Date(parse_date(value, _zone(fn, args)))
        except ValueError:
            raise invalid(f"{fn}: Unable to parse date '{value}'.") from None
    raise invalid(f"{fn}: Can't create a Date from {value!r}.")


@_algorithm("Date.fromYMD")
def _from_ymd(fn: str, args: dict[str, Any]) -> Date:
    try:
        moment = datetime.datetime(int(args["year"]), int(args["month"]), int(args["day"]), tzinfo=_zone(fn, args))
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"{fn}: Invalid date ({exc}).") from None
    return Date(_millis(moment))


_FIXED_UNITS = {"week": 604_800_000, "day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1_000}


@_algorithm("Date.advance")
def _advance(fn: str, args: dict[str, Any]) -> Date:
    date, unit, delta = _date(fn, args, "date"), args.get("unit"), args.get("delta")
    if not isinstance(delta, int | float) or isinstance(delta, bool):
        raise invalid(f"{fn}, argument 'delta': Invalid type.\nExpected type: Float.")
    if unit in _FIXED_UNITS:
        return Date(date.millis + round(delta * _FIXED_UNITS[str(unit)]))
    if unit not in ("year", "month") or delta != int(delta):
        raise invalid(f"{fn}: The local Earth Engine advances by whole years or months, or by {sorted(_FIXED_UNITS)}.")
    moment = _utc(date.millis).astimezone(_zone(fn, args))
    months = moment.year * 12 + moment.month - 1 + int(delta) * (12 if unit == "year" else 1)
    year, month = divmod(months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return Date(_millis(moment.replace(year=year, month=month + 1, day=day)))


@_algorithm("DateRange")
def _date_range(fn: str, args: dict[str, Any]) -> DateRange:
    zone_args = {"timeZone": args.get("timeZone")}
    start = _date_of(fn, {"value": args.get("start"), **zone_args})
    end = args.get("end")
    if end is None:
        return DateRange(start.millis, start.millis + 1)  # a 1-millisecond range, as documented
    return DateRange(start.millis, _date_of(fn, {"value": end, **zone_args}).millis)


@_algorithm("Filter.dateRangeContains")
def _date_range_contains(fn: str, args: dict[str, Any]) -> Filter:
    window = args.get("leftValue")
    if not isinstance(window, DateRange) or args.get("rightField") != "system:time_start" or args.get("leftField"):
        raise invalid(f"{fn}: The local Earth Engine only filters a DateRange value against 'system:time_start'.")
    return Filter(lambda millis: window.start <= millis < window.end)


_CALENDAR_FIELDS: dict[str, Callable[[datetime.datetime], int]] = {
    "year": lambda t: t.year,
    "month": lambda t: t.month,
    "day_of_year": lambda t: t.timetuple().tm_yday,
    "day_of_month": lambda t: t.day,
    "day_of_week": lambda t: t.weekday(),
    "hour": lambda t: t.hour,
    "minute": lambda t: t.minute,
}


@_algorithm("Filter.calendarRange")
def _calendar_range(fn: str, args: dict[str, Any]) -> Filter:
    field_name = args.get("field") or "day_of_year"
    part = _CALENDAR_FIELDS.get(str(field_name))
    if part is None:
        raise invalid(f"{fn}: Unknown calendar field '{field_name}'.")
    start = args.get("start")
    end = args.get("end", start) if args.get("end") is not None else start
    if not isinstance(start, int) or not isinstance(end, int):
        raise invalid(f"{fn}, arguments 'start' and 'end': Invalid type.\nExpected type: Integer.")

    def passes(millis: int) -> bool:
        value = part(_utc(millis))
        return start <= value <= end if start <= end else value >= start or value <= end  # end < start wraps

    return Filter(passes)


@_algorithm("Filter.and")
def _filter_and(fn: str, args: dict[str, Any]) -> Filter:
    filters = args.get("filters")
    if not isinstance(filters, list) or not all(isinstance(f, Filter) for f in filters):
        raise invalid(f"{fn}, argument 'filters': Invalid type.\nExpected type: List<Filter>.")
    return Filter(lambda millis: all(f.passes(millis) for f in filters))


@_algorithm("Collection.filter")
def _filter(fn: str, args: dict[str, Any]) -> ImageCollection:
    collection, condition = args.get("collection"), args.get("filter")
    if not isinstance(collection, ImageCollection) or not isinstance(condition, Filter):
        raise invalid(f"{fn}: Invalid arguments.\nExpected types: ImageCollection, Filter.")
    if not collection.filterable:
        raise invalid(f"{fn}: The local Earth Engine filters only '{alphaearth.COLLECTION}' (by date).")
    kept = tuple(y for y in collection.years if condition.passes(alphaearth.year_start_millis(y)))
    return ImageCollection(collection.asset_id, kept)


@_algorithm("Image.select")
def _select(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "input")
    assert image is not None
    selectors = args.get("bandSelectors")
    if not isinstance(selectors, list):
        selectors = [selectors]
    chosen = select_bands(image, selectors, fn)
    new_names = args.get("newNames")
    if new_names is not None:
        names = _strings(fn, args, "newNames")
        if len(names) != len(chosen):
            raise invalid(
                f"{fn}: The number of new names ({len(names)}) must match the number of bands ({len(chosen)})."
            )
        chosen = [b.renamed(n) for b, n in zip(chosen, names, strict=True)]
    return Image(tuple(chosen))


def select_bands(image: Image, selectors: Sequence[Any], fn: str = "Image.select") -> list[Band]:
    """Bands matching each selector in turn: an index, an exact name, or a regular expression (full match)."""
    chosen: list[Band] = []
    for selector in selectors:
        if isinstance(selector, int) and not isinstance(selector, bool):
            if not 0 <= selector < len(image.bands):
                raise invalid(f"{fn}: Band index {selector} out of bounds; the image has {len(image.bands)} bands.")
            chosen.append(image.bands[selector])
            continue
        if not isinstance(selector, str):
            raise invalid(f"{fn}: Invalid band selector {selector!r}.")
        try:
            pattern = re.compile(selector)
        except re.error:
            pattern = re.compile(re.escape(selector))
        found = [b for b in image.bands if b.name == selector or pattern.fullmatch(b.name)]
        if not found:
            raise invalid(f"{fn}: Pattern '{selector}' did not match any bands.")
        chosen.extend(found)
    return chosen


@_algorithm("Image.rename")
def _rename(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "input")
    assert image is not None
    names = _strings(fn, args, "names")
    if len(names) != len(image.bands):
        raise invalid(f"{fn}: Can't rename {len(image.bands)} bands to {len(names)} names.")
    return Image(tuple(b.renamed(n) for b, n in zip(image.bands, names, strict=True)))


@_algorithm("Image.mask")
def _mask(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "image")
    assert image is not None
    new = _image(fn, args, "mask", optional=True)
    if new is None:
        return Image(tuple(Band(b.name, np.dtype(np.float32), _mask_of(b)) for b in image.bands))
    sources = _per_band(fn, image, new, "mask")
    return Image(tuple(Band(b.name, b.dtype, _set_mask(b, m)) for b, m in zip(image.bands, sources, strict=True)))


@_algorithm("Image.updateMask")
def _update_mask(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "image")
    new = _image(fn, args, "mask")
    assert image is not None and new is not None
    sources = _per_band(fn, image, new, "mask")
    return Image(tuple(Band(b.name, b.dtype, _and_mask(b, m)) for b, m in zip(image.bands, sources, strict=True)))


def _per_band(fn: str, image: Image, other: Image, what: str) -> list[Band]:
    """`other`'s bands matched to `image`'s: one band applies to all, else the counts must agree."""
    if len(other.bands) == 1:
        return [other.bands[0]] * len(image.bands)
    if len(other.bands) != len(image.bands):
        raise invalid(f"{fn}: The {what} must have 1 band or as many bands as the image ({len(image.bands)}).")
    return list(other.bands)


def _mask_of(band: Band) -> Compute:
    """Values: the band's mask as 0.0/1.0 (float32), valid everywhere."""

    def compute(raster: Raster) -> tuple[Array, Mask]:
        _, mask = band.compute(raster)
        return np.broadcast_to(mask, raster.shape).astype(np.float32), np.ones(raster.shape, dtype=bool)

    return compute


def _set_mask(band: Band, source: Band) -> Compute:
    """Mask replaced by (source value != 0 where the source is valid); newly valid pixels become 0."""

    def compute(raster: Raster) -> tuple[Array, Mask]:
        values, old = band.compute(raster)
        mvalues, mmask = source.compute(raster)
        new = (mvalues != 0) & mmask
        return np.where(old, values, np.zeros((), dtype=band.dtype)), new

    return compute


def _and_mask(band: Band, source: Band) -> Compute:
    """Mask narrowed to where the source is non-zero and valid."""

    def compute(raster: Raster) -> tuple[Array, Mask]:
        values, old = band.compute(raster)
        mvalues, mmask = source.compute(raster)
        return values, old & (mvalues != 0) & mmask

    return compute


@_algorithm("Image.addBands")
def _add_bands(fn: str, args: dict[str, Any]) -> Image:
    dst = _image(fn, args, "dstImg")
    src = _image(fn, args, "srcImg")
    assert dst is not None and src is not None
    extra = list(src.bands) if args.get("names") is None else select_bands(src, _strings(fn, args, "names"), fn)
    if args.get("overwrite"):
        replaced = {b.name: b for b in extra}
        kept = [replaced.pop(b.name, b) for b in dst.bands]
        return Image(tuple(kept + [b for b in extra if b.name in replaced]))
    bands = list(dst.bands)
    for band in extra:
        bands.append(band.renamed(_unique_name(band.name, {b.name for b in bands})))
    return Image(tuple(bands))


def _unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2`, … — the first not in `taken`."""
    if name not in taken:
        return name
    number = 1
    while f"{name}_{number}" in taken:
        number += 1
    return f"{name}_{number}"


@_algorithm("Image.toUint8", "Image.uint8")
def _to_uint8(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "value")
    assert image is not None
    return Image(tuple(Band(b.name, np.dtype(np.uint8), _cast_uint8(b)) for b in image.bands))


def _cast_uint8(band: Band) -> Compute:
    """Values clamped to 0 … 255 and truncated toward zero; mask unchanged."""

    def compute(raster: Raster) -> tuple[Array, Mask]:
        values, mask = band.compute(raster)
        if values.dtype == np.uint8:
            return values, mask
        return np.trunc(np.clip(values, 0, 255)).astype(np.uint8), mask

    return compute


@_algorithm("Image.toFloat")
def _to_float(fn: str, args: dict[str, Any]) -> Image:
    return _cast(fn, args, np.dtype(np.float32))


@_algorithm("Image.toDouble")
def _to_double(fn: str, args: dict[str, Any]) -> Image:
    return _cast(fn, args, np.dtype(np.float64))


def _cast(fn: str, args: dict[str, Any], dtype: np.dtype[Any]) -> Image:
    """Every band converted to a float type (values rounded to it); masks unchanged."""
    image = _image(fn, args, "value")
    assert image is not None

    def converted(band: Band) -> Compute:
        def compute(raster: Raster) -> tuple[Array, Mask]:
            values, mask = band.compute(raster)
            return values.astype(dtype, copy=False), mask

        return compute

    return Image(tuple(Band(b.name, dtype, converted(b)) for b in image.bands))


_UNARY: dict[str, Callable[[Array], Array]] = {
    "Image.abs": np.abs,
    "Image.sqrt": np.sqrt,
    "Image.signum": np.sign,
    "Image.round": lambda v: np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5)),  # halves away from zero
}


@_algorithm(*_UNARY)
def _unary(fn: str, args: dict[str, Any]) -> Image:
    """Element-wise abs, sqrt, signum, round; masks unchanged (sqrt and round give float64, like double inputs)."""
    image = _image(fn, args, "value")
    assert image is not None
    operation = _UNARY[fn]

    def applied(band: Band) -> Band:
        dtype = band.dtype if fn in ("Image.abs", "Image.signum") else np.dtype(np.float64)

        def compute(raster: Raster) -> tuple[Array, Mask]:
            values, mask = band.compute(raster)
            with np.errstate(invalid="ignore"):
                return operation(values).astype(dtype, copy=False), mask

        return Band(band.name, dtype, compute)

    return Image(tuple(applied(b) for b in image.bands))


@_algorithm("Image.multiply")
def _multiply(fn: str, args: dict[str, Any]) -> Image:
    """Band-wise product; a one-band image applies to every band of the other; mask = both masks."""
    left, right = _image(fn, args, "image1"), _image(fn, args, "image2")
    assert left is not None and right is not None
    if len(left.bands) == 1 and len(right.bands) > 1:
        pairs = [(left.bands[0], b, b.name) for b in right.bands]
    else:
        pairs = [(a, b, a.name) for a, b in zip(left.bands, _per_band(fn, left, right, "image2"), strict=True)]

    def product(a: Band, b: Band, name: str) -> Band:
        dtype = np.result_type(a.dtype, b.dtype)

        def compute(raster: Raster) -> tuple[Array, Mask]:
            (va, ma), (vb, mb) = a.compute(raster), b.compute(raster)
            return np.multiply(va, vb, dtype=dtype), ma & mb

        return Band(name, dtype, compute)

    return Image(tuple(product(a, b, name) for a, b, name in pairs))


@_algorithm("Image.toInt8")
def _to_int8(fn: str, args: dict[str, Any]) -> Image:
    """Every band clamped to -128 … 127 and truncated toward zero; masks unchanged."""
    image = _image(fn, args, "value")
    assert image is not None

    def converted(band: Band) -> Compute:
        def compute(raster: Raster) -> tuple[Array, Mask]:
            values, mask = band.compute(raster)
            return np.trunc(np.clip(values, -128, 127)).astype(np.int8), mask

        return compute

    return Image(tuple(Band(b.name, np.dtype(np.int8), converted(b)) for b in image.bands))


@_algorithm("Image.constant")
def _constant(fn: str, args: dict[str, Any]) -> Image:
    value = args.get("value")
    values = value if isinstance(value, list) else [value]
    bands = []
    for number, item in enumerate(values):
        if not isinstance(item, int | float) or isinstance(item, bool):
            raise invalid(f"{fn}: Invalid constant {item!r}.")
        dtype = _constant_dtype(item)
        name = "constant" if len(values) == 1 else f"constant_{number}"
        bands.append(Band(name, dtype, _fill(item, dtype)))
    return Image(tuple(bands))


def _constant_dtype(value: int | float) -> np.dtype[Any]:
    """The smallest numpy type holding the constant (Earth Engine types constants by their range)."""
    if isinstance(value, float) and not value.is_integer():
        return np.dtype(np.float64)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.min <= value <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _fill(value: int | float, dtype: np.dtype[Any]) -> Compute:
    def compute(raster: Raster) -> tuple[Array, Mask]:
        return np.full(raster.shape, value, dtype=dtype), np.ones(raster.shape, dtype=bool)

    return compute


@_algorithm("Image.unmask")
def _unmask(fn: str, args: dict[str, Any]) -> Image:
    image = _image(fn, args, "input")
    assert image is not None
    value = _image(fn, args, "value", optional=True)
    if value is None:
        value = Image((Band("constant", np.dtype(np.uint8), _fill(0, np.dtype(np.uint8))),))
    sources = _per_band(fn, image, value, "value")
    return Image(
        tuple(
            Band(b.name, np.result_type(b.dtype, v.dtype), _fill_masked(b, v))
            for b, v in zip(image.bands, sources, strict=True)
        )
    )


def _fill_masked(band: Band, value: Band) -> Compute:
    """Masked pixels take the value band's value and mask."""

    def compute(raster: Raster) -> tuple[Array, Mask]:
        values, mask = band.compute(raster)
        fill, fill_mask = value.compute(raster)
        dtype = np.result_type(band.dtype, value.dtype)
        return np.where(mask, values, fill).astype(dtype, copy=False), mask | fill_mask

    return compute


# -- rendering --------------------------------------------------------------------------------------------


def output_bands(result: Any, band_ids: Sequence[str] | None) -> list[Band]:
    """The bands to return: the image's, or those named by `bandIds`; EEError 400 for anything else."""
    if not isinstance(result, Image):
        kind = type(result).__name__ if result is not None else "null"
        raise invalid(f"computePixels: the expression must evaluate to an Image, not {kind}.")
    bands = list(result.bands) if not band_ids else select_bands(result, list(band_ids), "computePixels")
    names = [b.name for b in bands]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise invalid(f"computePixels: duplicate band names {duplicates}.")
    if not bands:
        raise invalid("computePixels: the image has no bands.")
    return bands


def render(bands: Sequence[Band], raster: Raster) -> npt.NDArray[np.void]:
    """A structured array (height, width), one field per band; masked pixels hold 0."""
    out = np.zeros(raster.shape, dtype=[(b.name, b.dtype) for b in bands])
    for band in bands:
        values, mask = band.compute(raster)
        out[band.name] = np.where(mask, values, np.zeros((), dtype=band.dtype))
    return out


def evaluate_image(expression: Any, band_ids: Sequence[str] | None) -> list[Band]:
    """`evaluate` then `output_bands`; a malformed graph (wrong shapes or types) is a 400 too."""
    try:
        return output_bands(evaluate(expression), band_ids)
    except EEError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise invalid(f"Invalid expression: {type(exc).__name__}: {exc}") from exc
