"""Regions of interest as deployments take them: a bbox in any CRS, or a GeoJSON geometry; → cube windows.

Every check is darts_aux.region's, in the words of flow parameters (`bounds`, `crs`, `geometry`, `buffer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from odc.geo import geom
from pydantic import Field

from darts_aux.errors import DartsAuxError
from darts_aux.grid import MAX_BUFFER_PIXELS, PixelWindow, window_bounds
from darts_aux.products import Product
from darts_aux.region import GEOJSON_CRS, PARAMETER_WORDS, parameters_region, parameters_window, shape_window

Resolution = Literal[2, 10, 32]
"""The ArcticDEM cubes, as Prefect validates a `resolution` parameter."""
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Bounds = tuple[FiniteFloat, FiniteFloat, FiniteFloat, FiniteFloat]
"""(left, bottom, right, top): four finite numbers, as Prefect validates a `bounds` parameter."""
Buffer = Annotated[int, Field(ge=0, le=MAX_BUFFER_PIXELS)]
"""Cube pixels added on every side, as Prefect validates a `buffer` parameter."""
Geometry = dict[str, Any] | str
"""A GeoJSON geometry, Feature or FeatureCollection, as an object or as JSON text."""


def roi_geometry(bounds: object = None, crs: str | None = None, geometry: Mapping[str, Any] | str | None = None,
                 default_crs: str | None = None) -> geom.Geometry:
    """An ROI as an odc-geo Geometry: `bounds` (left, bottom, right, top) in `crs`, or a GeoJSON `geometry`.

    `geometry` may be a GeoJSON geometry, Feature or FeatureCollection (as a dict or a JSON string); its CRS is
    its own `crs` member, else `crs`, else EPSG:4326 as GeoJSON prescribes. `bounds` without `crs` are in
    `default_crs` (EPSG:4326 when not given).
    """
    return parameters_region(bounds, crs, geometry, default_crs or GEOJSON_CRS, PARAMETER_WORDS)


def geometry_window(product: Product, region: geom.Geometry, buffer: object = 0) -> PixelWindow:
    """The cube window covering a geometry (any CRS), padded by `buffer` cube pixels: what load_* would use."""
    return shape_window(product, region, buffer, PARAMETER_WORDS)


def fill_window_of(product: Product, bounds: object, crs: object, geometry: object, buffer: object) -> PixelWindow:
    """The window a fill flow covers: `bounds` (in `crs`, default the cube's) or a GeoJSON `geometry`, + `buffer`.

    Every check applies whatever the CRS: reversed, non-finite or out-of-extent bounds fail here, never fill nothing.
    """
    return parameters_window(product, bounds, crs, geometry, buffer, PARAMETER_WORDS)


def window_size_label(product: Product, window: PixelWindow) -> str:
    """'30×25 km' on a projected cube, '1.00×0.50°' on the lon/lat grid: the ROI size for run names."""
    left, bottom, right, top = window_bounds(product.extent, window)
    if product.extent.wrap_x:
        return f"{right - left:.2f}×{top - bottom:.2f}°"
    return f"{(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"


def run_name(product_of: Callable[[], Product], params: Mapping[str, Any]) -> str:
    """A fill run's name from its parameters: 'arcticdem-32m 40×40 km', the size of the window it fills.

    The window is the one the flow computes (the same checks), so the name never shows a size the run does not
    fill; a run whose parameters are not usable is named so, and fails with the reason.
    """
    try:
        product = product_of()
    except DartsAuxError:
        return "fill of an unknown cube"
    try:
        window = fill_window_of(product, params.get("bounds"), params.get("crs"), params.get("geometry"),
                                params.get("buffer", 0))
    except DartsAuxError:
        return f"{product.key} (region not usable)"
    return f"{product.key} {window_size_label(product, window)}"
