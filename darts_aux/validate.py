"""Checks of load_* arguments before anything is read, written or requested: typed errors that say what to change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from odc.geo.geobox import GeoBox

from . import region
from .errors import DataDirError, InvalidRequestError
from .grid import PixelWindow
from .location import DataLocation, S3Location, is_s3_url, parse_s3_url
from .products import Product


def check_persist(persist: object) -> bool:
    """`persist` as a bool; a string such as 'false' would silently mean True."""
    if not isinstance(persist, (bool, np.bool_)):
        raise InvalidRequestError(
            f"persist must be True (numpy arrays) or False (lazy dask arrays), got {persist!r}."
        )
    return bool(persist)


def check_buffer(buffer: object) -> int:
    """`buffer` of a load: a whole, non-negative pixel count within the limit (darts_aux.region.check_buffer)."""
    return region.check_buffer(buffer, region.GEOBOX_WORDS)


def check_geobox(geobox: object) -> GeoBox:
    """A GeoBox with a CRS, pixels, a finite non-degenerate transform (darts_aux.region.check_geobox)."""
    return region.check_geobox(geobox, region.GEOBOX_WORDS)


def region_window(product: Product, geobox: object, buffer: object,
                  words: region.RegionWords = region.GEOBOX_WORDS) -> PixelWindow:
    """The cube window of a load: arguments checked, footprint taken to the cube's CRS, padded and clipped.

    The one region check of every door (darts_aux.region); `words` name the arguments as the caller wrote them.
    """
    return region.geobox_window(product, geobox, buffer, words)


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
