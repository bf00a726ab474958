"""Checks of load_* arguments before anything is read, written or requested: typed errors that say what to change."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
from odc.geo.geobox import GeoBox

from .errors import (
    DataDirError,
    EmptyRegionError,
    InvalidBufferError,
    InvalidRegionError,
    InvalidRequestError,
)
from .grid import MAX_BUFFER_PIXELS, PixelWindow, roi_window
from .location import DataLocation, S3Location, is_s3_url, parse_s3_url
from .products import Product

_EXAMPLE = "e.g. GeoBox.from_bbox((590_000, 3_190_000, 620_000, 3_215_000), 'EPSG:3413', resolution=10)"


def check_persist(persist: object) -> bool:
    """`persist` as a bool; a string such as 'false' would silently mean True."""
    if not isinstance(persist, (bool, np.bool_)):
        raise InvalidRequestError(
            f"persist must be True (numpy arrays) or False (lazy dask arrays), got {persist!r}."
        )
    return bool(persist)


def check_buffer(buffer: object) -> int:
    """`buffer` as a whole, non-negative pixel count within the limit (a huge one would start a giant fill)."""
    if isinstance(buffer, (bool, np.bool_)) or not isinstance(buffer, numbers.Integral):
        raise InvalidBufferError(
            f"buffer must be a whole number of cube pixels (an int), got {buffer!r}; e.g. buffer=16."
        )
    value = int(buffer)
    if value < 0:
        raise InvalidBufferError(f"buffer={value} is negative; pass a non-negative number of cube pixels.")
    if value > MAX_BUFFER_PIXELS:
        raise InvalidBufferError(
            f"buffer={value} cube pixels is over the limit of {MAX_BUFFER_PIXELS:,} per side; pass at most "
            f"{MAX_BUFFER_PIXELS} (or a larger geobox instead of a huge buffer)."
        )
    return value


def check_geobox(geobox: object) -> GeoBox:
    """A GeoBox with a CRS, pixels, a finite non-degenerate transform and, if geographic, real latitudes."""
    if not isinstance(geobox, GeoBox):
        raise InvalidRegionError(
            f"expected an odc.geo GeoBox, got {type(geobox).__name__}; build one with GeoBox.from_bbox(...), "
            f"{_EXAMPLE}."
        )
    if geobox.crs is None:
        raise InvalidRegionError(f"the geobox has no CRS; give it one, {_EXAMPLE}.")
    if geobox.shape[0] <= 0 or geobox.shape[1] <= 0:
        raise EmptyRegionError(f"the geobox has no pixels (shape {tuple(geobox.shape)}); pass a non-empty geobox.")
    _check_transform(geobox)
    if geobox.crs.geographic:
        _check_latitudes(geobox)
    return geobox


def _check_transform(geobox: GeoBox) -> None:
    """Reject NaN/infinite transforms and zero-size pixels (a region of zero area)."""
    affine = geobox.affine
    values = tuple(affine[:6])
    if not all(math.isfinite(v) for v in values):
        raise EmptyRegionError(
            f"the geobox transform {values} has NaN or infinite values; build the geobox from finite "
            f"coordinates, {_EXAMPLE}."
        )
    if affine.determinant == 0:
        raise EmptyRegionError(
            f"the geobox transform {values} has zero area (a pixel size of 0); pass a geobox with a "
            f"non-zero pixel size."
        )


def _check_latitudes(geobox: GeoBox) -> None:
    """Latitudes beyond ±90° mean swapped axes or a typo, not a place: say so instead of clipping."""
    _, bottom, _, top = geobox.boundingbox
    if bottom < -90 - 1e-9 or top > 90 + 1e-9:
        raise InvalidRegionError(
            f"the geobox spans latitudes {bottom:.6g}…{top:.6g}, outside −90…90; give bounds as "
            f"(min lon, min lat, max lon, max lat) in {geobox.crs}."
        )


def region_window(product: Product, geobox: object, buffer: object) -> PixelWindow:
    """The cube window of a load: arguments checked, footprint taken to the cube's CRS, padded and clipped."""
    from pyproj.exceptions import ProjError

    pixels = check_buffer(buffer)
    checked = check_geobox(geobox)
    try:
        return roi_window(checked, product.extent, pixels)
    except ProjError as error:
        raise InvalidRegionError(
            f"the geobox's CRS cannot be transformed to {product.extent.crs} ({_first_line(error)}); pass a "
            f"geobox in an Earth CRS such as EPSG:4326, EPSG:3413 or a UTM zone."
        ) from None


def data_dir_path(data_dir: object) -> DataLocation:
    """A data_dir argument as a Path (str or os.PathLike of str) or an S3 location (s3://bucket/prefix)."""
    if isinstance(data_dir, S3Location):
        return data_dir
    if isinstance(data_dir, str) and is_s3_url(data_dir):
        return parse_s3_url(data_dir)
    if isinstance(data_dir, os.PathLike):
        data_dir = os.fspath(data_dir)
    if not isinstance(data_dir, str) or not data_dir.strip():
        raise DataDirError(
            f"data_dir must be a path (str or pathlib.Path) or an s3://bucket/prefix URL, got {data_dir!r}; pass "
            f"e.g. Path('/data/darts-aux'), or None for DARTS_AUX_DATA_DIR."
        )
    if "\0" in data_dir:
        raise DataDirError(f"data_dir {data_dir!r} contains a NUL character; pass a valid directory path.")
    path = Path(data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise DataDirError(f"data_dir {path} exists and is not a directory; pass a directory.")
    return path


def _first_line(error: BaseException) -> str:
    """The first line of an error's text, without PROJ's advice to override its celestial-body check."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].split(" You may override", 1)[0]
