"""Regions as deployments take them: bbox + CRS, GeoJSON geometry, regions files; and revisit's windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux.errors import DataDirError, EmptyRegionError, OutsideExtentError
from darts_aux.grid import ChunkGrid, ChunkId, bounds_window, roi_window
from darts_aux.products import arcticdem, tcvis
from flows.roi import fill_window_of, geometry_window, roi_geometry, window_size_label

DEM = arcticdem(32)
BOX_3413 = (650_000.0, 3_150_000.0, 690_000.0, 3_190_000.0)
SQUARE = {"type": "Polygon",
          "coordinates": [[[123.0, 61.0], [123.4, 61.0], [123.4, 61.2], [123.0, 61.2], [123.0, 61.0]]]}


def test_native_bounds_keep_the_old_window() -> None:
    assert fill_window_of(DEM, BOX_3413, None, None, 0) == bounds_window(DEM.extent, BOX_3413)
    assert fill_window_of(DEM, BOX_3413, "EPSG:3413", None, 0) == bounds_window(DEM.extent, BOX_3413)
    across = (179.5, 65.9, 180.5, 66.1)  # TCVIS bounds past 180° still wrap as before
    assert fill_window_of(tcvis(), across, None, None, 0) == bounds_window(tcvis().extent, across)


def test_bbox_in_another_crs_and_buffer_match_load_semantics() -> None:
    lonlat = (123.0, 61.0, 123.4, 61.2)
    expected = roi_window(GeoBox.from_bbox(lonlat, "EPSG:4326", shape=(1, 1), tight=True), DEM.extent, 3)
    assert fill_window_of(DEM, lonlat, "EPSG:4326", None, 3) == expected
    padded = fill_window_of(DEM, BOX_3413, None, None, 2)
    plain = bounds_window(DEM.extent, BOX_3413)
    assert (padded.row0, padded.col0, padded.row1, padded.col1) == (plain.row0 - 2, plain.col0 - 2,
                                                                    plain.row1 + 2, plain.col1 + 2)


@pytest.mark.parametrize("form", ["geometry", "feature", "collection", "text"])
def test_geojson_geometry_in_any_wrapping(form: str) -> None:
    value = {"geometry": SQUARE, "feature": {"type": "Feature", "properties": {}, "geometry": SQUARE},
             "collection": {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": SQUARE}]},
             "text": json.dumps(SQUARE)}[form]
    window = fill_window_of(DEM, None, None, value, 0)
    projected = roi_geometry(geometry=SQUARE).to_crs("EPSG:3413", resolution="auto").boundingbox
    assert window == bounds_window(DEM.extent, tuple(projected))
    assert window_size_label(DEM, window).endswith(" km")
    assert window_size_label(tcvis(), fill_window_of(tcvis(), None, None, value, 0)) == "0.40×0.20°"


def test_bad_regions_say_what_to_change() -> None:
    with pytest.raises(EmptyRegionError, match="not both"):
        roi_geometry(BOX_3413, None, SQUARE)
    with pytest.raises(EmptyRegionError, match="neither"):
        roi_geometry()
    with pytest.raises(EmptyRegionError, match="no area"):
        roi_geometry((1.0, 2.0, 1.0, 3.0), "EPSG:4326")
    with pytest.raises(EmptyRegionError, match="valid GeoJSON"):
        roi_geometry(geometry="{not json")
    with pytest.raises(OutsideExtentError):
        geometry_window(DEM, roi_geometry((10.0, -40.0, 11.0, -39.0), "EPSG:4326"))  # South Atlantic


def test_regions_file_geoparquet_in_its_own_crs(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from flows.prefetch import read_regions

    path = tmp_path / "regions.parquet"
    gpd.GeoDataFrame({"id": [7, 8]}, geometry=[box(*BOX_3413), box(700_000, 3_100_000, 710_000, 3_110_000)],
                     crs="EPSG:3413").to_parquet(path)
    regions = read_regions(path)
    assert [label for label, _ in regions] == ["7", "8"]
    assert geometry_window(DEM, regions[0][1]) == bounds_window(DEM.extent, BOX_3413)
    with pytest.raises(DataDirError, match="does not exist"):
        read_regions(tmp_path / "missing.geojson")


def test_partial_windows_hold_only_partial_chunks() -> None:
    from flows.revisit import partial_windows

    grid = ChunkGrid(DEM)
    chunks = [ChunkId(5, 3), ChunkId(5, 4), ChunkId(6, 3), ChunkId(6, 4), ChunkId(6, 6), ChunkId(9, 0)]
    windows = partial_windows(grid, chunks)
    assert len(windows) == 3
    assert sorted(c for w in windows for c in grid.chunks(w)) == sorted(chunks)
