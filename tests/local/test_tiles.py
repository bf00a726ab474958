"""Tile ids and geometry against PGC's real v4.1 grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from darts_aux.local.spec import REAL_BOUNDS, SUBTILES, SUPERTILES, default_spec
from darts_aux.local.tiles import TileRef, collection_id


@pytest.mark.parametrize(("item_id", "bounds"), sorted(REAL_BOUNDS.items()))
def test_bounds_match_recorded_real_index(item_id: str, bounds: tuple[float, float, float, float]) -> None:
    assert TileRef.parse(item_id).bounds == bounds


@pytest.mark.parametrize(
    ("item_id", "shape", "origin"),
    [
        ("72_47_32m_v4.1", (3131, 3131), (599_904.0, 3_200_096.0)),
        ("72_47_10m_v4.1", (10020, 10020), (599_900.0, 3_200_100.0)),
        ("72_47_2_1_2m_v4.1", (25100, 25100), (599_900.0, 3_200_100.0)),
        ("72_47_1_2_2m_v4.1", (25100, 25100), (649_900.0, 3_150_100.0)),
    ],
)
def test_shape_and_transform(item_id: str, shape: tuple[int, int], origin: tuple[float, float]) -> None:
    tile = TileRef.parse(item_id)
    assert tile.shape == shape
    t = tile.transform
    assert (t.c, t.f) == origin
    assert (t.a, t.e) == (tile.resolution, -tile.resolution)


@pytest.mark.parametrize(
    ("name", "resolution", "item_id", "collection"),
    [
        ("72_47", 32, "72_47_32m_v4.1", "arcticdem-mosaics-v4.1-32m"),
        ("72_47", 10, "72_47_10m_v4.1", "arcticdem-mosaics-v4.1-10m"),
        ("72_47_2_1", None, "72_47_2_1_2m_v4.1", "arcticdem-mosaics-v4.1-2m"),
        ("72_47_2_1_2m_v4.1", None, "72_47_2_1_2m_v4.1", "arcticdem-mosaics-v4.1-2m"),
    ],
)
def test_parse_round_trip(name: str, resolution: int | None, item_id: str, collection: str) -> None:
    tile = TileRef.parse(name, resolution)  # type: ignore[arg-type]
    assert tile.item_id == item_id
    assert tile.collection == collection == collection_id(tile.resolution)
    assert TileRef.parse(tile.item_id) == tile


@pytest.mark.parametrize("bad", ["72_47", "7_47_32m_v4.1", "72_47_3_1_2m_v4.1", "72_47_1_1_10m_v4.1", "x"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        TileRef.parse(bad)


def test_subtile_halves() -> None:
    """r is the y half (1 = south), c the x half (1 = west), as in the real index."""
    st = TileRef.parse("72_47", 10).nominal_bounds
    sw = TileRef.parse("72_47_1_1_2m_v4.1").nominal_bounds
    ne = TileRef.parse("72_47_2_2_2m_v4.1").nominal_bounds
    assert sw[:2] == st[:2] and ne[2:] == st[2:]
    assert TileRef.parse("72_47_2_1_2m_v4.1").nominal_bounds[1] == st[1] + 50_000


def test_asset_layout_mirrors_pgc_s3() -> None:
    tile = TileRef.parse("72_47_1_2_2m_v4.1")
    assert tile.asset_relpath("dem") == "arcticdem/mosaics/v4.1/2m/72_47/72_47_1_2_2m_v4.1_dem.tif"
    assert tile.item_relpath == "arcticdem/mosaics/v4.1/2m/72_47/72_47_1_2_2m_v4.1.json"


def test_default_spec_counts() -> None:
    spec = default_spec()
    assert len(spec.item_ids(32)) == len(spec.item_ids(10)) == len(SUPERTILES) == 20
    assert len(spec.item_ids(2)) == len(SUBTILES) == 8
    assert spec.published_item_ids() == spec.item_ids()


@pytest.mark.parametrize("resolution", [2, 10, 32])
def test_every_default_tile_matches_real_index(resolution: int, pgc_index: Path) -> None:
    """Every synthetic tile exists in PGC's index with exactly its footprint."""
    real = real_footprints(pgc_index, resolution)
    for tile in default_spec().tiles(resolution):  # type: ignore[arg-type]
        assert tile.item_id in real.index, tile.item_id
        assert tuple(real.loc[tile.item_id].geometry.bounds) == tile.bounds, tile.item_id


@pytest.mark.parametrize(("item_id", "bounds"), sorted(REAL_BOUNDS.items()))
def test_recorded_bounds_are_the_real_index(item_id: str, bounds: tuple[float, float, float, float],
                                            pgc_index: Path) -> None:
    """The footprints recorded in the spec are those of the real index, not a copy of the code's own formula."""
    real = real_footprints(pgc_index, TileRef.parse(item_id).resolution)
    assert tuple(real.loc[item_id].geometry.bounds) == bounds


def real_footprints(index: Path, resolution: int) -> Any:
    """One resolution's layer of PGC's index: geometries by dem_id."""
    import geopandas as gpd

    layer = f"ArcticDEM_Mosaic_Index_v4_1_{resolution}m"
    return gpd.read_file(index, layer=layer, columns=["dem_id"]).set_index("dem_id")
