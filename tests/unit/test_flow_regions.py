"""Regions as deployments take them: bbox + CRS, GeoJSON geometry, regions files; and revisit's windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux.errors import DataDirError, EmptyRegionError, InvalidBufferError, InvalidRegionError, OutsideExtentError
from darts_aux.flows.roi import fill_window_of, geometry_window, roi_geometry, window_size_label
from darts_aux.grid import ChunkGrid, ChunkId, bounds_window, roi_window
from darts_aux.products import arcticdem, tcvis

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
    with pytest.raises(InvalidRegionError, match="either bounds .with crs. or geometry, not both"):
        roi_geometry(BOX_3413, None, SQUARE)
    with pytest.raises(InvalidRegionError, match="neither"):
        roi_geometry()
    with pytest.raises(EmptyRegionError, match="bounds 1 2 1 3 is empty"):
        roi_geometry((1.0, 2.0, 1.0, 3.0), "EPSG:4326")
    with pytest.raises(InvalidRegionError, match="geometry is not GeoJSON .not valid JSON"):
        roi_geometry(geometry="{not json")
    with pytest.raises(OutsideExtentError, match="pass bounds or a geometry that overlaps it"):
        geometry_window(DEM, roi_geometry((10.0, -40.0, 11.0, -39.0), "EPSG:4326"))  # South Atlantic


# Bounds in the cube's own CRS used to skip every check: reversed or out-of-extent bounds filled nothing.
@pytest.mark.parametrize(("bounds", "crs", "error", "hint"), [
    ((690_000, 3_150_000, 650_000, 3_190_000), None, EmptyRegionError,
     "bounds 690000 3150000 650000 3190000 is empty: it needs left < right"),
    ((690_000, 3_150_000, 650_000, 3_190_000), "EPSG:3413", EmptyRegionError, "is empty"),
    ((650_000, 3_190_000, 690_000, 3_150_000), None, EmptyRegionError, "bottom < top"),
    ((5_000_000, 5_000_000, 5_100_000, 5_100_000), None, OutsideExtentError,
     r"the region \(5000000, 5000000, 5100000, 5100000 in EPSG:3413\) lies outside the cube extent of "
     r"arcticdem-32m \(-4000096, -3400096, 3400096, 4100096 in EPSG:3413\)"),
    ((5_000_000, 5_000_000, 5_100_000, 5_100_000), "EPSG:3413", OutsideExtentError, "outside the cube extent"),
    ((650_000, float("nan"), 690_000, 3_190_000), None, EmptyRegionError, "not a finite number"),
    ((650_000, 3_150_000, float("inf"), 3_190_000), None, EmptyRegionError, "not a finite number"),
    ((650_000, 3_150_000, 690_000), None, InvalidRegionError, r"bounds must be four numbers \(left, bottom, right, "
                                                              r"top\), got \(650000, 3150000, 690000\)"),
    ("650000 3150000 690000 3190000", None, InvalidRegionError, "four numbers"),
    ((650_000, 3_150_000, 690_000, 3_190_000), "EPSG:999999", InvalidRegionError, "crs: unknown CRS 'EPSG:999999'"),
    ((650_000, 3_150_000, 690_000, 3_190_000), 3413, InvalidRegionError, "crs must be a CRS name"),
    ((10.0, 80.0, 11.0, 91.0), "EPSG:4326", InvalidRegionError, r"latitudes 80…91, outside −90…90; give bounds as"),
    ((10.0, 10.0, 11.0, 11.0), "IAU_2015:49900", InvalidRegionError, "pass bounds or a geometry in an Earth CRS"),
], ids=["reversed-x", "reversed-x-3413", "reversed-y", "outside", "outside-3413", "nan", "inf", "three-values",
        "text", "unknown-crs", "crs-not-text", "latitude-91", "mars"])
def test_every_bad_bounds_fails_whatever_the_crs(bounds: object, crs: object, error: type[Exception],
                                                 hint: str) -> None:
    with pytest.raises(error, match=hint) as raised:
        fill_window_of(DEM, bounds, crs, None, 0)
    assert type(raised.value) is error


@pytest.mark.parametrize(("buffer", "hint"), [(-1, "buffer=-1 is negative"), (2.5, "buffer must be a whole number"),
                                              (10**9, "over the limit")])
def test_bad_buffer_fails_with_native_bounds_too(buffer: object, hint: str) -> None:
    with pytest.raises(InvalidBufferError, match=hint):
        fill_window_of(DEM, BOX_3413, None, None, buffer)


@pytest.mark.parametrize(("geometry", "error", "hint"), [
    ({"type": "Topology"}, InvalidRegionError, "geometry is not GeoJSON: type 'Topology'"),
    ({"type": "FeatureCollection", "features": []}, EmptyRegionError, "geometry holds no geometry"),
    ({"type": "Point", "coordinates": [123.0, 61.0]}, EmptyRegionError, "has no area"),
    ({**SQUARE, "crs": {"type": "name", "properties": {"name": "EPSG:3413"}}}, InvalidRegionError,
     "geometry says its CRS is EPSG:3413 but crs is EPSG:4326; drop crs"),
    ([1, 2], InvalidRegionError, "expected a geometry, Feature or FeatureCollection"),
], ids=["topology", "empty-collection", "point", "crs-conflict", "list"])
def test_bad_geometry(geometry: object, error: type[Exception], hint: str) -> None:
    with pytest.raises(error, match=hint) as raised:
        fill_window_of(DEM, None, "EPSG:4326", geometry, 0)
    assert type(raised.value) is error


def test_geometry_in_its_own_crs_member() -> None:
    square = {"type": "Polygon", "coordinates": [[[650_000, 3_150_000], [690_000, 3_150_000], [690_000, 3_190_000],
                                                  [650_000, 3_190_000], [650_000, 3_150_000]]],
              "crs": {"type": "name", "properties": {"name": "EPSG:3413"}}}
    assert fill_window_of(DEM, None, None, square, 0) == bounds_window(DEM.extent, BOX_3413)


def test_regions_file_geoparquet_in_its_own_crs(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from darts_aux.flows.prefetch import read_regions

    path = tmp_path / "regions.parquet"
    gpd.GeoDataFrame({"id": [7, 8]}, geometry=[box(*BOX_3413), box(700_000, 3_100_000, 710_000, 3_110_000)],
                     crs="EPSG:3413").to_parquet(path)
    regions = read_regions(path)
    assert [label for label, _ in regions] == ["7", "8"]
    assert geometry_window(DEM, regions[0][1]) == bounds_window(DEM.extent, BOX_3413)
    with pytest.raises(DataDirError, match="does not exist"):
        read_regions(tmp_path / "missing.geojson")


def test_partial_windows_hold_only_partial_chunks() -> None:
    from darts_aux.flows.revisit import partial_windows

    grid = ChunkGrid(DEM)
    chunks = [ChunkId(5, 3), ChunkId(5, 4), ChunkId(6, 3), ChunkId(6, 4), ChunkId(6, 6), ChunkId(9, 0)]
    windows = partial_windows(grid, chunks)
    assert len(windows) == 3
    assert sorted(c for w in windows for c in grid.chunks(w)) == sorted(chunks)
