"""Pixel merging rules: valid pixels already present are never overwritten."""

from __future__ import annotations

import math

import numpy as np


def valid_mask(array: np.ndarray, fill_value: float | int) -> np.ndarray:
    """Where `array` holds data: not NaN for a NaN fill, else not equal to the fill."""
    if isinstance(fill_value, float) and math.isnan(fill_value):
        return ~np.isnan(array)
    return array != fill_value


def missing_mask(array: np.ndarray, fill_value: float | int) -> np.ndarray:
    """Where `array` holds no data: NaN for a NaN fill, else equal to the fill."""
    if isinstance(fill_value, float) and math.isnan(fill_value):
        return np.isnan(array)
    return array == fill_value


def fill_gaps(target: np.ndarray, source: np.ndarray, fill_value: float | int) -> np.ndarray:
    """Copy `source` into the pixels of `target` that have no data yet (in place); returns `target`.

    Where both lack data the copy writes no-data over no-data, so only `target` needs a mask.
    """
    np.copyto(target, source, where=missing_mask(target, fill_value))
    return target


def nodata_to_fill(array: np.ndarray, nodata: float | int | None, fill_value: float | int) -> np.ndarray:
    """Replace a source's nodata value by the cube's fill value (e.g. −9999 → NaN), in place."""
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)) and nodata != fill_value:
        array[array == nodata] = fill_value
    return array
