"""Merging never overwrites valid pixels; nodata becomes the cube's fill."""

from __future__ import annotations

import numpy as np

from darts_aux.mosaic import fill_gaps, nodata_to_fill, valid_mask


def test_fill_gaps_keeps_existing_valid_pixels() -> None:
    target = np.array([1.0, np.nan, 0.0, np.nan], dtype="float32")
    source = np.array([9.0, 2.0, 9.0, np.nan], dtype="float32")
    fill_gaps(target, source, float("nan"))
    np.testing.assert_array_equal(target, np.array([1.0, 2.0, 0.0, np.nan], dtype="float32"))


def test_fill_gaps_with_integer_fill() -> None:
    target = np.array([0, 3, 0], dtype="uint8")
    fill_gaps(target, np.array([1, 1, 0], dtype="uint8"), 0)
    np.testing.assert_array_equal(target, [1, 3, 0])


def test_nodata_to_fill_and_zero_is_valid_elevation() -> None:
    dem = nodata_to_fill(np.array([-9999.0, 0.0, 12.5], dtype="float32"), -9999.0, float("nan"))
    assert np.isnan(dem[0]) and dem[1] == 0.0
    np.testing.assert_array_equal(valid_mask(dem, float("nan")), [False, True, True])
