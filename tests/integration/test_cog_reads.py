"""A COG window read over HTTP: GDAL's band read straight into the caller's array, without rasterio's mask-flag ask.

rasterio's `read()` asks GDAL for the band's mask flags with the GIL held, and the first ask reads the file's
other directories over HTTP: with another thread downloading the same bytes and needing the GIL in its error
handler, the two waited forever (seen in a flaky-server test). `CogFile.read` must not go that way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from darts_aux.local import LocalCatalog
from darts_aux.sources.cog import CogFile, gdal_http_options


class _NoMaskFlags:
    """A dataset that fails the test if `read()` or the mask flags are used (everything else is the real one)."""

    def __init__(self, src: Any) -> None:
        self._src = src

    def __getattr__(self, name: str) -> Any:
        if name in ("read", "mask_flag_enums", "read_masks", "dataset_mask"):
            raise AssertionError(f"CogFile.read used {name}: it asks GDAL for mask flags with the GIL held")
        return getattr(self._src, name)


def test_a_window_read_lands_in_a_strided_array_equal_to_the_file_and_asks_no_mask_flags(
        catalog: LocalCatalog) -> None:
    item_id = catalog.published()[0]
    window = Window(col_off=97, row_off=211, width=300, height=150)
    with rasterio.open(catalog.asset_path(item_id, "dem")) as local:
        expected = local.read(1, window=window)
    result = np.full((150, 400), -1.0, "float32")
    target = result[:, 50:350]  # a column slice: rows are not contiguous in memory
    cog = CogFile(catalog.asset_url(item_id, "dem"), timeout=30)
    with rasterio.Env(**gdal_http_options(30)):
        cog._src = _NoMaskFlags(rasterio.open(cog.href))
        try:
            got = cog.read(window, target)
            fresh = cog.read(window)
        finally:
            cog._src._src.close()
    assert got is target
    np.testing.assert_array_equal(target, expected)
    np.testing.assert_array_equal(fresh, expected)
    assert (result[:, :50] == -1).all() and (result[:, 350:] == -1).all()  # nothing written beside the window
    assert np.isfinite(expected).mean() > 0.5 and len(np.unique(expected)) > 100  # real terrain, not fill
