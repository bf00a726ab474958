"""The smart-geocubes peer (benchmarks/peer_sgc.py) run for real on two 32 m tiles, checked against their files.

The peer runs in its own Python 3.13 venv (built with uv on first use) and fills its own icechunk cube from the
loopback catalog. Its cube is "last tile written wins" over each tile's whole footprint, buffer nodata included;
the oracle here is that rule applied to the tiles' COG files read with rasterio, in the order the peer reports
having written them. Against darts-aux the two differ exactly where the later tile's nodata buffer covers the
earlier tile's elevations.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.local import CatalogSpec, LocalCatalog

from .conftest import REPO_ROOT, point_at

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import peer_sgc

SEAM_TILES = ("72_47", "72_48")
"""Two 32 m supertiles side by side: their buffers overlap on x = 699,904 … 700,096."""
BOX = (690_016.0, 3_150_016.0, 710_016.0, 3_170_016.0)
"""20 km × 20 km at 32 m (625² cube pixels) across the seam, on the cube's pixel edges."""


@pytest.fixture(scope="module")
def seam_catalog() -> Iterator[LocalCatalog]:
    """A catalog of the two 32 m tiles, built once under .cache/ and served for this module."""
    with LocalCatalog(REPO_ROOT / ".cache" / "peer-sgc-catalog", CatalogSpec(tiles_32m=SEAM_TILES)) as running:
        yield running


def last_writer_wins(catalog: LocalCatalog, order: list[str], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The tiles' own file pixels at (x, y), each tile overwriting its whole footprint in `order`; NaN/False
    where no tile lies (the peer's empty cube)."""
    dem, mask = np.full((y.size, x.size), np.nan, np.float32), np.zeros((y.size, x.size), bool)
    for item_id in order:
        for asset, out in (("dem", dem), ("datamask", mask)):
            with rasterio.open(catalog.asset_path(item_id, asset)) as src:
                cols = np.floor((x - src.bounds.left) / src.res[0]).astype(int)
                rows = np.floor((src.bounds.top - y) / src.res[1]).astype(int)
                in_cols = np.nonzero((cols >= 0) & (cols < src.width))[0]
                in_rows = np.nonzero((rows >= 0) & (rows < src.height))[0]
                band = src.read(1)
                out[np.ix_(in_rows, in_cols)] = band[np.ix_(rows[in_rows], cols[in_cols])]
    return {"dem": dem, "datamask": mask}


def test_the_peer_fills_its_cube_from_the_loopback_catalog_and_its_pixels_are_the_tiles_last_writer_wins(
        seam_catalog: LocalCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(seam_catalog, monkeypatch, orchestrator="inline")
    report = peer_sgc.peer_load(seam_catalog.stac_url, BOX, 32, tmp_path / "peer", tmp_path / "out", timeout=300)

    written = [step["patch"] for step in report["steps"] if step["action"] == "write"]
    assert sorted(written) == [f"{tile}_32m_v4.1" for tile in SEAM_TILES]
    item_gets = [r["path"] for r in seam_catalog.requests("stac") if "/items/" in r["path"]]
    assert sorted(item_gets) == [f"/stac/collections/arcticdem-mosaics-v4.1-32m/items/{item}" for item in written]
    assert report["versions"]["smart-geocubes"].startswith("0.1.")

    x, y = np.load(tmp_path / "out" / "x.npy"), np.load(tmp_path / "out" / "y.npy")
    expected = last_writer_wins(seam_catalog, written, x, y)
    peer_dem, peer_mask = np.load(tmp_path / "out" / "dem.npy"), np.load(tmp_path / "out" / "datamask.npy")
    np.testing.assert_array_equal(peer_dem, expected["dem"])
    np.testing.assert_array_equal(peer_mask, expected["datamask"])

    ours = load_arcticdem(GeoBox.from_bbox(BOX, "EPSG:3413", resolution=32), tmp_path / "darts-aux", 32)
    comparison = peer_sgc.compare(tmp_path / "out", ours)
    assert comparison["grids_coincide"]
    assert comparison["ours_shape"] == [625, 625] and comparison["peer_shape"] == [627, 627]
    assert comparison["peer_beyond_ours"] == {"top": 1, "bottom": 1, "left": 1, "right": 1}
    inside = np.ix_(np.arange(1, 626), np.arange(1, 626))
    covered = (expected["dem"][inside] == peer_sgc.PEER_NODATA) & ~np.isnan(ours.dem.values)
    assert covered.sum() > 0
    assert comparison["dem"]["different"] == comparison["dem"]["peer_nodata_where_ours_value"] == covered.sum()
    assert comparison["datamask"]["different"] == covered.sum()
    assert comparison["dem"]["max_abs_difference"] == 0.0
