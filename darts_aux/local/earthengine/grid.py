"""The `grid` of a computePixels request: parsing, pixel centres, and Earth Engine's size limits.

Grids may be in any CRS given as an EPSG `crsCode` that PROJ knows (e.g. EPSG:4326, EPSG:3413, a UTM zone); they
must be north-up without shear. Pixel centres in another CRS are computed with pyproj, imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from darts_aux.local.earthengine.errors import EEError, invalid

MAX_REQUEST_BYTES = 50_331_648
"""Largest computePixels answer: width · height · Σ(bytes per value + 1 mask byte) over the bands (48 MiB)."""
MAX_GRID_SIDE = 32_768
"""Largest width or height of a computePixels grid, in pixels."""
GEOGRAPHIC_CRS = "EPSG:4326"


@dataclass(frozen=True)
class PixelGrid:
    """A north-up pixel grid: size, the affine transform of the top-left pixel corner, and its CRS."""

    width: int
    height: int
    scale_x: float
    translate_x: float
    scale_y: float
    translate_y: float
    crs: str = GEOGRAPHIC_CRS
    """An EPSG code, upper case ('EPSG:4326')."""

    @classmethod
    def from_request(cls, grid: Any) -> PixelGrid:
        """Parse the request's `grid` (PixelGrid JSON); EEError 400 for what the local service cannot do."""
        if not isinstance(grid, Mapping):
            raise invalid("computePixels needs a 'grid' (the local Earth Engine has no native grid to default to).")
        crs = _crs_code(grid)
        dims = _mapping(grid.get("dimensions"), "grid.dimensions")
        affine = _mapping(grid.get("affineTransform"), "grid.affineTransform")
        width, height = _int(dims, "width"), _int(dims, "height")
        shear_x, shear_y = _float(affine, "shearX"), _float(affine, "shearY")
        if shear_x != 0.0 or shear_y != 0.0:
            raise invalid(
                f"The local Earth Engine only serves grids without shear (shearX={shear_x}, shearY={shear_y})."
            )
        scale_x, scale_y = _float(affine, "scaleX"), _float(affine, "scaleY")
        if scale_x == 0.0 or scale_y == 0.0:
            raise invalid("Grid scaleX and scaleY must be non-zero.")
        if width <= 0 or height <= 0:
            raise invalid(f"Pixel grid dimensions ({width}x{height}) must be positive.")
        return cls(width, height, scale_x, _float(affine, "translateX"), scale_y, _float(affine, "translateY"), crs)

    def x(self) -> npt.NDArray[np.float64]:
        """x of the pixel centres of one row in the grid's CRS (longitude for EPSG:4326), shape (width,)."""
        return self.translate_x + (np.arange(self.width, dtype=np.float64) + 0.5) * self.scale_x

    def y(self) -> npt.NDArray[np.float64]:
        """y of the pixel centres of one column in the grid's CRS (latitude for EPSG:4326), shape (height, 1)."""
        return (self.translate_y + (np.arange(self.height, dtype=np.float64) + 0.5) * self.scale_y)[:, None]

    def lon(self) -> npt.NDArray[np.float64]:
        """`x()`: the pixel-centre longitudes of an EPSG:4326 grid."""
        return self.x()

    def lat(self) -> npt.NDArray[np.float64]:
        """`y()`: the pixel-centre latitudes of an EPSG:4326 grid."""
        return self.y()

    def check_size(self, bytes_per_value: Sequence[int]) -> None:
        """EEError 400 with Earth Engine's wording if the grid or the answer is too large."""
        if self.width > MAX_GRID_SIDE or self.height > MAX_GRID_SIDE:
            raise invalid(
                f"Pixel grid dimensions ({self.width}x{self.height}) must be less than or equal to {MAX_GRID_SIDE}."
            )
        total = request_bytes(self.width, self.height, bytes_per_value)
        if total > MAX_REQUEST_BYTES:
            raise invalid(
                f"Total request size ({total} bytes) must be less than or equal to {MAX_REQUEST_BYTES} bytes."
            )


def request_bytes(width: int, height: int, bytes_per_value: Sequence[int]) -> int:
    """Earth Engine's request size: every pixel of every band costs its value bytes plus one mask byte."""
    return width * height * sum(b + 1 for b in bytes_per_value)


def _crs_code(grid: Mapping[str, Any]) -> str:
    """The grid's `crsCode` as 'EPSG:n' if PROJ knows it; EEError 400 otherwise (crsWkt is not served)."""
    crs = grid.get("crsCode")
    if "crsWkt" in grid:
        raise invalid("The local Earth Engine only serves grids with an EPSG crsCode, not a crsWkt.")
    if not isinstance(crs, str) or not crs.upper().startswith("EPSG:") or not crs[5:].isdigit():
        raise invalid(f"The local Earth Engine only serves grids with an EPSG crsCode, not {crs!r}.")
    code = crs.upper()
    if code != GEOGRAPHIC_CRS and not known_crs(code):
        raise invalid(f"Unknown CRS code {crs!r}.")
    return code


@functools.lru_cache(maxsize=64)
def known_crs(code: str) -> bool:
    """True if PROJ has a definition for the EPSG code."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(code)
    except CRSError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def transformer(source: str, target: str) -> Any:
    """A cached pyproj Transformer from one EPSG code to another (x/y order: longitude first)."""
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid(f"Missing or invalid {name} in the computePixels grid.")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    """An integer field (the JSON mapping of int32 may be a string); 0 when absent, like proto3."""
    try:
        value = obj.get(key, 0)
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError(value)
        return number
    except (TypeError, ValueError):
        raise invalid(f"Invalid value for grid.dimensions.{key}: {obj.get(key)!r}") from None


def _float(obj: Mapping[str, Any], key: str) -> float:
    """A double field; 0 when absent, like proto3."""
    try:
        number = float(obj.get(key, 0.0))
    except (TypeError, ValueError):
        raise invalid(f"Invalid value for grid.affineTransform.{key}: {obj.get(key)!r}") from None
    if not np.isfinite(number):
        raise EEError(400, f"Invalid value for grid.affineTransform.{key}: {number}")
    return number
