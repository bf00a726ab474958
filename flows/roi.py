"""Regions of interest as deployments take them: a bbox in any CRS, or a GeoJSON geometry; → cube windows."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from odc.geo import geom
from odc.geo.geobox import GeoBox

from darts_aux.errors import EmptyRegionError
from darts_aux.grid import PixelWindow, bounds_window, roi_window, window_bounds
from darts_aux.products import Product

GEOJSON_CRS = "EPSG:4326"
Bounds = tuple[float, float, float, float]


def roi_geometry(bounds: Bounds | list[float] | None = None, crs: str | None = None,
                 geometry: Mapping[str, Any] | str | None = None, default_crs: str | None = None) -> geom.Geometry:
    """An ROI as an odc-geo Geometry: `bounds` (left, bottom, right, top) in `crs`, or a GeoJSON `geometry`.

    `geometry` may be a GeoJSON geometry, Feature or FeatureCollection (as a dict or a JSON string); its CRS is
    `crs`, else EPSG:4326 as GeoJSON prescribes. `bounds` without `crs` are in `default_crs`.
    """
    if (bounds is None) == (geometry is None):
        raise EmptyRegionError("give the region as either `bounds` (with `crs`) or a GeoJSON `geometry`, not "
                               f"{'both' if bounds is not None else 'neither'}.")
    if geometry is not None:
        return geom.Geometry(_geojson_geometry(geometry), crs or GEOJSON_CRS)
    values = tuple(float(v) for v in bounds)  # type: ignore[union-attr]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise EmptyRegionError(f"bounds must be four finite numbers (left, bottom, right, top), got {bounds!r}.")
    left, bottom, right, top = values
    if right <= left or top <= bottom:
        raise EmptyRegionError(f"bounds {values} have no area: right must exceed left and top must exceed bottom.")
    return geom.box(left, bottom, right, top, crs or default_crs or GEOJSON_CRS)


def _geojson_geometry(value: Mapping[str, Any] | str) -> dict[str, Any]:
    """The geometry of a GeoJSON geometry, Feature or FeatureCollection (several features: a GeometryCollection)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise EmptyRegionError(f"geometry is not valid GeoJSON text: {error}.") from error
    if not isinstance(value, Mapping) or "type" not in value:
        raise EmptyRegionError(f"geometry must be a GeoJSON object with a 'type', got {value!r:.80}.")
    kind = value["type"]
    if kind == "Feature":
        return _geojson_geometry(value["geometry"])
    if kind == "FeatureCollection":
        parts = [_geojson_geometry(f) for f in value.get("features", [])]
        if not parts:
            raise EmptyRegionError("the GeoJSON FeatureCollection has no features.")
        return parts[0] if len(parts) == 1 else {"type": "GeometryCollection", "geometries": parts}
    return dict(value)


def geometry_window(product: Product, region: geom.Geometry, buffer: int = 0) -> PixelWindow:
    """The cube window covering a geometry (any CRS), padded by `buffer` cube pixels: what load_* would use.

    On a projected cube the geometry itself is projected (tighter than projecting its bounding box); on the
    global lon/lat grid the antimeridian handling of `darts_aux.grid.roi_window` applies.
    """
    extent = product.extent
    if region.is_empty:
        raise EmptyRegionError("the region geometry is empty.")
    if not extent.wrap_x and region.crs != extent.crs:
        region = region.to_crs(extent.crs, resolution="auto")
    bbox = region.boundingbox
    if not all(math.isfinite(v) for v in bbox) or bbox.right <= bbox.left or bbox.top <= bbox.bottom:
        raise EmptyRegionError(f"the region's bounding box {tuple(bbox)} has no area in {region.crs}.")
    geobox = GeoBox.from_bbox(tuple(bbox), region.crs, shape=(1, 1), tight=True)
    return roi_window(geobox, extent, buffer)


def fill_window_of(product: Product, bounds: Bounds | list[float] | None, crs: str | None,
                   geometry: Mapping[str, Any] | str | None, buffer: int) -> PixelWindow:
    """The window a fill flow covers: bounds in the cube's CRS exactly as before, or any bbox + CRS / geometry."""
    native = crs is None or _same_crs(crs, product.extent.crs)
    if geometry is None and bounds is not None and native and buffer == 0:
        return bounds_window(product.extent, tuple(float(v) for v in bounds))  # type: ignore[arg-type]
    region = roi_geometry(bounds, crs, geometry, default_crs=product.extent.crs)
    return geometry_window(product, region, buffer)


def window_size_label(product: Product, window: PixelWindow) -> str:
    """'30×25 km' on a projected cube, '1.00×0.50°' on the lon/lat grid: the ROI size for run names."""
    left, bottom, right, top = window_bounds(product.extent, window)
    if product.extent.wrap_x:
        return f"{right - left:.2f}×{top - bottom:.2f}°"
    return f"{(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"


def _same_crs(a: str, b: str) -> bool:
    from pyproj import CRS

    return a == b or CRS.from_user_input(a) == CRS.from_user_input(b)
