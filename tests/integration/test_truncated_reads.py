"""Bodies cut short by the server never become silent holes: every COG window read either matches or fails.

libtiff loads a COG's block offsets lazily by default; a cut-short read of them made GDAL report blocks as
absent and fill them with nodata without any error. This reads the tiles at the 2 m supertile corner through
a proxy that truncates 30 % of the bodies, many times over, and compares every successful read with the file.
"""

from __future__ import annotations

import numpy as np
import rasterio

from darts_aux.grid import bounds_window
from darts_aux.local import LocalCatalog
from darts_aux.local.faults import FaultProxy
from darts_aux.local.spec import SUBTILES_AT_SUPERTILE_CORNER, SUPERTILE_CORNER, around
from darts_aux.products import arcticdem
from darts_aux.retry import RetryPolicy
from darts_aux.sources.cog import gdal_http_options, read_item
from darts_aux.sources.items import TileItem

PRODUCT = arcticdem(2)
TRIALS = 8
ITEMS = tuple(f"{tile}_2m_v4.1" for tile in SUBTILES_AT_SUPERTILE_CORNER)


def _item(catalog: LocalCatalog, item_id: str, hrefs: dict[str, str]) -> TileItem:
    with rasterio.open(catalog.asset_path(item_id, "dem")) as src:
        return TileItem(item_id, hrefs, tuple(src.transform)[:6], (src.height, src.width))


def test_truncated_bodies_are_retried_or_reported_never_read_as_nodata(catalog: LocalCatalog) -> None:
    window = bounds_window(PRODUCT.extent, around(SUPERTILE_CORNER, 3_000))
    truth = {}
    for item_id in ITEMS:
        local = _item(catalog, item_id, {a: str(catalog.asset_path(item_id, a)) for a in ("dem", "datamask")})
        overlap = local.window_on(PRODUCT).intersect(window)
        truth[item_id] = (overlap, read_item(PRODUCT, local, overlap, RetryPolicy(0, 0, 0), 5))
    assert all(pixels["datamask"].any() for _, pixels in truth.values())

    exact = failed = 0
    with FaultProxy(catalog.base_url, stall_seconds=1) as proxy:
        for trial in range(TRIALS):
            proxy.set_faults(probability=0.3, kinds=["truncate"], seed=trial, path_prefix="/files/")
            for item_id in ITEMS:
                # a fresh URL per trial, so GDAL's per-URL cache cannot answer from an earlier trial
                hrefs = {a: proxy.via(catalog.asset_url(item_id, a)) + f"?trial={trial}" for a in ("dem", "datamask")}
                overlap, expected = truth[item_id]
                with rasterio.Env(**gdal_http_options(2, 3, 0.02)):
                    try:
                        got = read_item(PRODUCT, _item(catalog, item_id, hrefs), overlap, RetryPolicy(3, 0.02, 0.1), 2)
                    except Exception:  # noqa: BLE001 - a reported failure is allowed; a wrong answer is not
                        failed += 1
                        continue
                for name in ("dem", "datamask"):
                    np.testing.assert_array_equal(got[name], expected[name], err_msg=f"trial {trial} {item_id} {name}")
                exact += 1
        truncated = proxy.fault_counts()["truncate"]
    assert truncated > 50 and exact >= len(ITEMS) * TRIALS // 2, (truncated, exact, failed)
