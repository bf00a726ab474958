"""The `grid` of a computePixels request: parsing, pixel centres, and Earth Engine's size limits."""

from __future__ import annotations

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
SUPPORTED_CRS = ("EPSG:4326",)


@dataclass(frozen=True)
class PixelGrid:
    """A north-up EPSG:4326 pixel grid: size plus the affine transform of the top-left pixel corner."""

    width: int
    height: int
    scale_x: float
    translate_x: float
    scale_y: float
    translate_y: float

    @classmethod
    def from_request(cls, grid: Any) -> PixelGrid:
        """Parse the request's `grid` (PixelGrid JSON); EEError 400 for what the local service cannot do."""
        if not isinstance(grid, Mapping):
            raise invalid("computePixels needs a 'grid' (the local Earth Engine has no native grid to default to).")
        crs = grid.get("crsCode")
        if "crsWkt" in grid or not isinstance(crs, str) or crs.upper() not in SUPPORTED_CRS:
            shown = crs if crs is not None else ("crsWkt" if "crsWkt" in grid else "none")
            raise invalid(f"The local Earth Engine only serves grids with crsCode 'EPSG:4326', not {shown!r}.")
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
        return cls(width, height, scale_x, _float(affine, "translateX"), scale_y, _float(affine, "translateY"))

    def lon(self) -> npt.NDArray[np.float64]:
        """Longitudes of the pixel centres of one row, shape (width,)."""
        return self.translate_x + (np.arange(self.width, dtype=np.float64) + 0.5) * self.scale_x

    def lat(self) -> npt.NDArray[np.float64]:
        """Latitudes of the pixel centres of one column, shape (height, 1)."""
        return (self.translate_y + (np.arange(self.height, dtype=np.float64) + 0.5) * self.scale_y)[:, None]

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
