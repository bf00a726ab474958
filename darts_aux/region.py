"""One check of a region, whichever door it comes through: a load_* geobox, the CLI's --bbox/--crs/--geojson, or a
flow's bounds/crs/geometry parameters (and the buffer of each).

The same mistake raises the same error class from every door (reversed or non-finite bounds: EmptyRegionError; a
region that misses the cube: OutsideExtentError; an unknown or non-Earth CRS, bad latitudes, malformed GeoJSON:
InvalidRegionError; a bad buffer: InvalidBufferError). The message names the argument as the caller wrote it,
through the door's `RegionWords`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from odc.geo import geom
from odc.geo.geobox import GeoBox

from .errors import EmptyRegionError, InvalidBufferError, InvalidRegionError, OutsideExtentError
from .grid import MAX_BUFFER_PIXELS, PixelWindow, roi_window
from .products import Product
from .wording import plain, plain_numbers

Bounds = tuple[float, float, float, float]
"""(left, bottom, right, top) in the region's CRS."""
GEOJSON_CRS = "EPSG:4326"
GEOJSON_GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                      "GeometryCollection")


@dataclass(frozen=True)
class RegionWords:
    """What a door calls each part of a region, so that one check speaks every caller's words."""

    region: str
    """The region as the caller gives it, after 'pass': 'a geobox', 'bounds or a geometry'."""
    bounds: str
    """The bounding box argument: 'the geobox', '--bbox', 'bounds'."""
    order: str
    """How the bounding box's four numbers are ordered, in the door's words."""
    crs: str
    geometry: str
    buffer: str


GEOBOX_WORDS = RegionWords(region="a geobox", bounds="the geobox", order="min lon, min lat, max lon, max lat",
                           crs="the geobox's CRS", geometry="the geobox", buffer="buffer")
"""The Python API's words (load_arcticdem, load_tcvis)."""
CLI_WORDS = RegionWords(region="a region (--bbox or --geojson)", bounds="--bbox", order="MINX MINY MAXX MAXY",
                        crs="--crs", geometry="--geojson", buffer="--buffer")
"""The command line's words (darts-aux fetch / load)."""
PARAMETER_WORDS = RegionWords(region="bounds or a geometry", bounds="bounds", order="left, bottom, right, top",
                              crs="crs", geometry="geometry", buffer="buffer")
"""The words of a flow's (deployment's) parameters."""


# -- the parts of a region ---------------------------------------------------------------------------


def check_buffer(buffer: object, words: RegionWords = GEOBOX_WORDS) -> int:
    """`buffer` as a whole, non-negative pixel count within the limit (a huge one would start a giant fill)."""
    name = words.buffer
    if isinstance(buffer, (bool, np.bool_)) or not isinstance(buffer, numbers.Integral):
        raise InvalidBufferError(
            f"{name} must be a whole number of cube pixels (an int), got {buffer!r}; e.g. {name}=16."
        )
    value = int(buffer)
    if value < 0:
        raise InvalidBufferError(f"{name}={value} is negative; pass a non-negative number of cube pixels.")
    if value > MAX_BUFFER_PIXELS:
        raise InvalidBufferError(
            f"{name}={value} cube pixels is over the limit of {MAX_BUFFER_PIXELS:,} per side; pass at most "
            f"{MAX_BUFFER_PIXELS} (or a larger region instead of a huge buffer)."
        )
    return value


def check_bounds(bounds: object, words: RegionWords) -> Bounds:
    """Four finite numbers with left < right and bottom < top."""
    values = _four_numbers(bounds, words)
    shown = plain_numbers(values, " ")
    if not all(math.isfinite(v) for v in values):
        raise EmptyRegionError(f"{words.bounds} {shown} has a value that is not a finite number; give four finite "
                               f"numbers ({words.order}).")
    left, bottom, right, top = values
    if left >= right or bottom >= top:
        hint = " (a region across the antimeridian continues past 180, e.g. 179.5 … 180.5)" if left >= right else ""
        x0, y0, x1, y1 = words.order.split(", ") if ", " in words.order else words.order.split()
        raise EmptyRegionError(f"{words.bounds} {shown} is empty: it needs {x0} < {x1} and {y0} < {y1}, in the "
                               f"order {words.order}{hint}.")
    return values


def _four_numbers(bounds: object, words: RegionWords) -> Bounds:
    """The bounds as four floats, or InvalidRegionError naming what was given."""
    values = _real_numbers(bounds)
    if values is None or len(values) != 4:
        raise InvalidRegionError(f"{words.bounds} must be four numbers ({words.order}), got {_short(bounds)}.")
    left, bottom, right, top = values
    return left, bottom, right, top


def _real_numbers(value: object) -> tuple[float, ...] | None:
    """The items of a sequence or array of real numbers (not booleans) as floats; None for anything else."""
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, (str, bytes)):
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in value):
        return None
    return tuple(float(v) for v in value)


def check_crs(crs: object, words: RegionWords) -> str:
    """A CRS as text, normalised ('EPSG:n', else WKT); OGC:CRS84 (GeoJSON's lon/lat order) is EPSG:4326."""
    from odc.geo.crs import CRS

    if not isinstance(crs, str):
        raise InvalidRegionError(f"{words.crs} must be a CRS name like EPSG:3413, got {_short(crs)}.")
    if "CRS84" in crs.upper():
        return GEOJSON_CRS
    try:
        parsed = CRS(crs)
    except Exception as error:  # noqa: BLE001 - pyproj's CRSError and odc-geo's ValueError alike
        raise InvalidRegionError(f"{words.crs}: unknown CRS {crs!r} ({_first_line(error)}); give it like "
                                 f"EPSG:3413.") from None
    return f"EPSG:{parsed.epsg}" if parsed.epsg is not None else parsed.to_wkt()


def check_geobox(geobox: object, words: RegionWords = GEOBOX_WORDS) -> GeoBox:
    """A GeoBox with a CRS, pixels, a finite transform of non-zero area and, if geographic, real latitudes."""
    example = "e.g. GeoBox.from_bbox((590_000, 3_190_000, 620_000, 3_215_000), 'EPSG:3413', resolution=10)"
    if not isinstance(geobox, GeoBox):
        raise InvalidRegionError(f"expected an odc.geo GeoBox, got {type(geobox).__name__}; build one with "
                                 f"GeoBox.from_bbox(...), {example}.")
    if geobox.crs is None:
        raise InvalidRegionError(f"the geobox has no CRS; give it one, {example}.")
    if geobox.shape[0] <= 0 or geobox.shape[1] <= 0:
        raise EmptyRegionError(f"the geobox has no pixels (shape {tuple(geobox.shape)}); pass a non-empty geobox.")
    values = tuple(geobox.affine[:6])
    if not all(math.isfinite(v) for v in values):
        raise EmptyRegionError(f"the geobox transform ({plain_numbers(values)}) has NaN or infinite values; build "
                               f"the geobox from finite coordinates, {example}.")
    if geobox.affine.determinant == 0:
        raise EmptyRegionError(f"the geobox transform ({plain_numbers(values)}) has zero area (a pixel size of 0); "
                               f"pass a geobox with a non-zero pixel size.")
    _check_latitudes(geobox.crs, geobox.boundingbox, words)
    return geobox


# -- GeoJSON -------------------------------------------------------------------------------------------


def geojson_document(value: object, words: RegionWords) -> Mapping[str, Any]:
    """A GeoJSON object given as a mapping or as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise InvalidRegionError(f"{words.geometry} is not GeoJSON (not valid JSON: {_first_line(error)}).") \
                from None
    if not isinstance(value, Mapping):
        raise InvalidRegionError(f"{words.geometry} is not GeoJSON: expected a geometry, Feature or "
                                 f"FeatureCollection object, got {_short(value)}.")
    return value


def geojson_shape(document: Mapping[str, Any], words: RegionWords) -> Any:
    """The shapely geometry of a GeoJSON geometry, Feature or FeatureCollection (empty parts dropped)."""
    import shapely
    from shapely.geometry import shape

    try:
        parts = [shape(g) for g in _geojson_geometries(document, words)]
    except InvalidRegionError:
        raise
    except Exception as error:  # noqa: BLE001 - shapely's GeometryTypeError, KeyError, ValueError for malformed coordinates
        raise InvalidRegionError(f"{words.geometry} holds a geometry that cannot be read ({_first_line(error)}).") \
            from None
    parts = [p for p in parts if not p.is_empty]
    if not parts:
        raise EmptyRegionError(f"{words.geometry} holds no geometry with coordinates.")
    return parts[0] if len(parts) == 1 else shapely.GeometryCollection(parts)


def _geojson_geometries(document: Mapping[str, Any], words: RegionWords) -> list[Mapping[str, Any]]:
    kind = document.get("type")
    if kind == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise InvalidRegionError(f"{words.geometry}: a FeatureCollection needs a 'features' list.")
        return [f["geometry"] for f in features if isinstance(f, Mapping) and f.get("geometry")]
    if kind == "Feature":
        return [document["geometry"]] if document.get("geometry") else []
    if kind in GEOJSON_GEOMETRIES:
        return [document]
    raise InvalidRegionError(f"{words.geometry} is not GeoJSON: type {kind!r} is not a geometry, Feature or "
                             f"FeatureCollection.")


def geojson_crs(document: Mapping[str, Any], words: RegionWords) -> str | None:
    """The CRS a GeoJSON object's legacy `crs` member names ({"type": "name", "properties": {"name": …}}), if any."""
    member = document.get("crs")
    if member is None:
        return None
    name = member.get("properties", {}).get("name") if isinstance(member, Mapping) else None
    if not isinstance(name, str):
        raise InvalidRegionError(f"{words.geometry}: the 'crs' member must be "
                                 f"{{'type': 'name', 'properties': {{'name': 'EPSG:…'}}}}.")
    return check_crs(name, replace(words, crs=f"the 'crs' member of {words.geometry}"))


def geojson_region(value: object, crs: str | None, words: RegionWords) -> geom.Geometry:
    """A GeoJSON region in its CRS: the object's `crs` member, else `crs` (already checked), else EPSG:4326."""
    document = geojson_document(value, words)
    shape = geojson_shape(document, words)
    own = geojson_crs(document, words)
    if own is not None and crs is not None and own != crs:
        raise InvalidRegionError(f"{words.geometry} says its CRS is {own} but {words.crs} is {crs}; drop "
                                 f"{words.crs}.")
    return geom.Geometry(shape, own or crs or GEOJSON_CRS)


# -- regions to cube windows ---------------------------------------------------------------------------


def parameters_region(bounds: object, crs: object, geometry: object, bounds_crs: str,
                      words: RegionWords = PARAMETER_WORDS) -> geom.Geometry:
    """A region given as `bounds` (in `crs`, default `bounds_crs`) or as a GeoJSON `geometry`: checked, as a shape."""
    if (bounds is None) == (geometry is None):
        which = "both" if bounds is not None else "neither"
        raise InvalidRegionError(f"give the region as either {words.bounds} (with {words.crs}) or "
                                 f"{words.geometry}, not {which}.")
    given = None if crs is None else check_crs(crs, words)
    if geometry is not None:
        return geojson_region(geometry, given, words)
    return geom.box(*check_bounds(bounds, words), given or bounds_crs)


def parameters_window(product: Product, bounds: object, crs: object, geometry: object, buffer: object,
                      words: RegionWords = PARAMETER_WORDS) -> PixelWindow:
    """The cube window of a region given as parameters (bounds in the cube's CRS by default), padded by `buffer`."""
    pixels = check_buffer(buffer, words)
    region = parameters_region(bounds, crs, geometry, product.extent.crs, words)
    return shape_window(product, region, pixels, words)


def shape_window(product: Product, region: geom.Geometry, buffer: object,
                 words: RegionWords = PARAMETER_WORDS) -> PixelWindow:
    """The cube window covering a shape (any CRS), padded by `buffer` cube pixels: what load_* would use.

    On a projected cube the shape itself is projected (tighter than projecting its bounding box); on the
    global lon/lat grid the antimeridian handling of `darts_aux.grid.roi_window` applies.
    """
    pixels = check_buffer(buffer, words)
    extent = product.extent
    if region.is_empty:
        raise EmptyRegionError(f"the region ({words.region}) is empty.")
    _check_latitudes(region.crs, region.boundingbox, words)
    with _earth_crs(product, region.crs, words):
        if not extent.wrap_x and region.crs != extent.crs:
            region = region.to_crs(extent.crs, resolution="auto")
    bbox = region.boundingbox.bbox
    if not all(math.isfinite(v) for v in bbox):
        raise _outside(product, bbox, str(region.crs), words)
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        raise EmptyRegionError(f"the region ({words.region}) has no area: its bounding box is "
                               f"{plain_numbers(bbox)} in {region.crs}; give a polygon or a box.")
    footprint = GeoBox.from_bbox(bbox, region.crs, shape=(1, 1), tight=True)
    return _footprint_window(product, footprint, pixels, words)


def geobox_window(product: Product, geobox: object, buffer: object, words: RegionWords = GEOBOX_WORDS) -> PixelWindow:
    """The cube window of a geobox (any CRS), padded by `buffer` cube pixels, every argument checked first."""
    pixels = check_buffer(buffer, words)
    checked = check_geobox(geobox, words)
    return _footprint_window(product, checked, pixels, words)


def _footprint_window(product: Product, footprint: GeoBox, pixels: int, words: RegionWords) -> PixelWindow:
    """grid.roi_window, its errors told in the door's words."""
    with _earth_crs(product, footprint.crs, words):
        try:
            return roi_window(footprint, product.extent, pixels)
        except (OutsideExtentError, EmptyRegionError):  # the footprint misses the cube, or cannot reach its CRS
            pass
    raise _outside(product, tuple(footprint.boundingbox), str(footprint.crs), words)


def _outside(product: Product, bbox: tuple[float, ...], crs: str, words: RegionWords) -> OutsideExtentError:
    extent = product.extent
    return OutsideExtentError(
        f"the region ({plain_numbers(bbox)} in {crs}) lies outside the cube extent of {product.key} "
        f"({plain_numbers(extent.bounds)} in {extent.crs}); pass {words.region} that overlaps it."
    )


def _check_latitudes(crs: Any, bbox: Sequence[float], words: RegionWords) -> None:
    """Latitudes beyond ±90° mean swapped axes or a typo, not a place: say so instead of clipping."""
    if crs is None or not crs.geographic:
        return
    _, bottom, _, top = bbox
    if bottom < -90 - 1e-9 or top > 90 + 1e-9:
        raise InvalidRegionError(f"the region spans latitudes {plain(bottom)}…{plain(top)}, outside −90…90; give "
                                 f"{words.bounds} as ({words.order}) in {crs}.")


@contextmanager
def _earth_crs(product: Product, crs: Any, words: RegionWords) -> Iterator[None]:
    """Turn PROJ's refusal to transform (a CRS of another planet, an engineering CRS) into InvalidRegionError."""
    from pyproj.exceptions import ProjError

    try:
        yield
    except ProjError as error:
        raise InvalidRegionError(
            f"the region's CRS ({_crs_name(crs)}) cannot be transformed to {product.extent.crs} "
            f"({_first_line(error)}); pass {words.region} in an Earth CRS such as EPSG:4326, EPSG:3413 or a UTM zone."
        ) from None


def _crs_name(crs: Any) -> str:
    epsg = getattr(crs, "epsg", None)
    return f"EPSG:{epsg}" if epsg is not None else getattr(getattr(crs, "proj", None), "name", None) or str(crs)[:60]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _first_line(error: BaseException) -> str:
    """The first line of an error's text, without PROJ's advice to override its celestial-body check."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].split(" You may override", 1)[0]
