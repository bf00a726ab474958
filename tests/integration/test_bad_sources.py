"""Bad data from sources: a typed error that names the source and says what to do, and nothing written.

The ArcticDEM cases serve one broken item (or one broken COG in place of a real one) from a real STAC API
(`rustac serve`) behind the local gateway; the Earth Engine cases make the local Earth Engine answer a
well-formed .npy of the wrong shape or type.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem, load_tcvis
from darts_aux.errors import DartsAuxError, SourceDataError, SourceError
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.stac_items import render_item
from darts_aux.products import TCVIS_PIXEL, tcvis
from darts_aux.settings import reload_settings
from darts_aux.store import Cube, cube_paths

from ._faults import ServedItems, disk_state
from .conftest import CATALOG_ROOT

TILE = TileRef.parse("72_47_32m_v4.1")  # x 599,904–700,096 m, y 3,099,904–3,200,096 m
ROI = GeoBox.from_bbox((640_000, 3_150_000, 660_000, 3_170_000), "EPSG:3413", resolution=32)  # one chunk, one tile
Item = dict[str, Any]


def _without_dem(item: Item) -> Item:
    del item["assets"]["dem"]
    return item


def _in_antarctica(item: Item) -> Item:
    item["properties"]["proj:code"] = "EPSG:3031"
    return item


def _at_30m(item: Item) -> Item:
    a, b, c, d, e, f = item["properties"]["proj:transform"]
    rows, cols = item["properties"]["proj:shape"]
    item["properties"]["proj:transform"] = [30.0, b, c, d, -30.0, f]
    item["properties"]["proj:shape"] = [round(rows * -e / 30), round(cols * a / 30)]
    item["properties"]["gsd"] = 30.0
    return item


def _load_from(items: Callable[[str], list[Item]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
               shadow: Callable[[Path], None] | None = None) -> tuple[pytest.ExceptionInfo[SourceDataError], Path]:
    """Serve `items` (plus a file shadowing the tile's dem COG), load the ROI, return the error and the data dir."""
    data_dir = tmp_path / "data"
    with ServedItems(tmp_path / "served", items, [CATALOG_ROOT]) as served:
        if shadow is not None:
            target = served.files_dir / TILE.asset_relpath("dem")
            target.parent.mkdir(parents=True, exist_ok=True)
            shadow(target)
        monkeypatch.setenv("DARTS_AUX_STAC_URL", served.stac_url)
        monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
        reload_settings()
        with pytest.raises(SourceDataError) as raised:
            load_arcticdem(ROI, data_dir, 32)
    return raised, data_dir


def _assert_typed(raised: pytest.ExceptionInfo[SourceDataError], source: str, *phrases: str) -> None:
    error = raised.value
    assert isinstance(error, SourceError) and isinstance(error, DartsAuxError)
    assert error.source == source
    for phrase in phrases:
        assert phrase in str(error), str(error)


@pytest.mark.parametrize(
    ("broken", "phrase"),
    [(_without_dem, "has no 'dem' asset"), (_in_antarctica, "is in EPSG:3031"), (_at_30m, "pixel size (30.0, -30.0)")],
    ids=["no-dem-asset", "other-crs", "other-pixel-size"],
)
def test_a_bad_stac_item_is_rejected_before_anything_is_written(
    catalog: LocalCatalog, broken: Callable[[Item], Item], phrase: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    raised, data_dir = _load_from(lambda files_url: [broken(render_item(TILE, files_url))], monkeypatch, tmp_path)
    _assert_typed(raised, "stac", TILE.item_id, phrase, "DARTS_AUX_STAC_URL")
    assert disk_state(data_dir) is None


def _html(path: Path) -> None:
    path.write_text("<!doctype html><html><body><h1>Object moved</h1></body></html>")


def _png(path: Path) -> None:
    """A plain PNG picture with no georeferencing, where the COG should be."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # no grid: the point of this file
        with rasterio.open(path, "w", driver="PNG", width=64, height=64, count=1, dtype="uint8") as png:
            png.write(np.zeros((64, 64), np.uint8), 1)


def _striped(path: Path) -> None:
    """The real tile rewritten as a plain GeoTIFF: same grid and pixels, LZW strips instead of 512² tiles."""
    with rasterio.open(CATALOG_ROOT / TILE.asset_relpath("dem")) as src:
        profile, data = src.profile, src.read(1)
    for key in ("blockxsize", "blockysize", "tiled", "interleave"):
        profile.pop(key, None)
    with rasterio.open(path, "w", **{**profile, "driver": "GTiff", "tiled": False, "compress": "lzw"}) as dst:
        dst.write(data, 1)


def _truncated(path: Path) -> None:
    """The real COG cut off at 60 %: its header is intact, the last full-resolution tiles are gone."""
    data = (CATALOG_ROOT / TILE.asset_relpath("dem")).read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


@pytest.mark.parametrize(
    ("shadow", "phrases"),
    [
        (_html, ("is not a GeoTIFF", "<!doctype html>")),
        (_png, ("holds 'uint8' pixels",)),
        (_striped, ("striped GeoTIFF",)),
        (_truncated, ("is truncated",)),
    ],
    ids=["html-page", "png", "striped-geotiff", "truncated-cog"],
)
def test_an_asset_that_is_no_usable_cog_is_rejected_before_anything_is_written(
    catalog: LocalCatalog, shadow: Callable[[Path], None], phrases: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    raised, data_dir = _load_from(lambda files_url: [render_item(TILE, files_url)], monkeypatch, tmp_path, shadow)
    _assert_typed(raised, "cog", TILE.asset_relpath("dem"), *phrases, "DARTS_AUX_STAC_URL")
    assert disk_state(data_dir) is None


# TCVIS: two chunks in northern Alaska; the first is filled before the bad answer arrives for the second.
_TCVIS = tcvis()
_LON = _TCVIS.extent.x0 + 125 * _TCVIS.fill_chunk * TCVIS_PIXEL
_LAT = _TCVIS.extent.y0 - 18 * _TCVIS.fill_chunk * TCVIS_PIXEL
GOOD_TCVIS = GeoBox.from_bbox((_LON + 0.1, _LAT - 0.3, _LON + 0.4, _LAT - 0.1), "EPSG:4326", resolution=TCVIS_PIXEL)
BAD_TCVIS = GeoBox.from_bbox((_LON - 0.4, _LAT - 0.3, _LON - 0.1, _LAT - 0.1), "EPSG:4326", resolution=TCVIS_PIXEL)


@pytest.mark.parametrize(("fault", "phrase"), [("wrong-shape", "of shape (1249, 5000)"), ("wrong-dtype", "int16")])
def test_an_earth_engine_answer_of_the_wrong_shape_or_type_changes_nothing_on_disk(
    use_earth_engine: LocalEarthEngine, inline: None, fault: str, phrase: str, tmp_path: Path,
) -> None:
    grid = ChunkGrid(_TCVIS)
    good, bad = (grid.chunks(roi_window(roi, _TCVIS.extent)) for roi in (GOOD_TCVIS, BAD_TCVIS))
    assert len(good) == len(bad) == 1 and good != bad
    load_tcvis(GOOD_TCVIS, tmp_path)
    before = disk_state(tmp_path)
    commits = len(list(Cube.open(tmp_path, _TCVIS).history()))
    use_earth_engine.reset_log()

    use_earth_engine.set_faults([fault])
    with pytest.raises(SourceDataError) as raised:
        load_tcvis(BAD_TCVIS, tmp_path)

    _assert_typed(raised, "earthengine", phrase, "DARTS_AUX_EE_URL")
    assert [r.get("corrupt") for r in use_earth_engine.compute_requests()].count(fault) == 1, "not retried"
    assert disk_state(tmp_path) == before
    assert len(list(Cube.open(tmp_path, _TCVIS).history())) == commits
    assert cube_paths(tmp_path, _TCVIS).root.exists()
