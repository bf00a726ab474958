"""The command line's pure parts: products, regions (bbox, CRS, GeoJSON), output kinds, file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux.cli_support import (
    CliInputError,
    bbox_geobox,
    check_bbox,
    coverage_map_path,
    output_kind,
    parse_crs,
    product_for,
    read_geojson,
    region_geobox,
)
from darts_aux.errors import EmptyRegionError, InvalidRegionError, InvalidRequestError, InvalidResolutionError
from darts_aux.grid import roi_window
from darts_aux.products import DEFAULT_TCVIS_EDITION, TCVIS_EDITIONS, arcticdem, tcvis

SQUARE = [[[10.0, 60.0], [12.0, 60.0], [12.0, 61.5], [10.0, 61.5], [10.0, 60.0]]]


def _write(tmp_path: Path, document: object, name: str = "roi.geojson") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


# -- products ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("resolution", "key"), [(None, "arcticdem-32m"), (2, "arcticdem-2m"), (10, "arcticdem-10m")])
def test_arcticdem_product_defaults_to_32_m(resolution: int | None, key: str) -> None:
    assert product_for("arcticdem", resolution, DEFAULT_TCVIS_EDITION).key == key


def test_tcvis_product_follows_the_configured_edition() -> None:
    assert product_for("tcvis", None, "2003-2022") == tcvis("2003-2022")


@pytest.mark.parametrize(("name", "resolution", "error"), [
    ("arcticdem", 5, InvalidResolutionError), ("tcvis", 30, CliInputError), ("dem", None, CliInputError),
])
def test_bad_products(name: str, resolution: int | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        product_for(name, resolution, DEFAULT_TCVIS_EDITION)


def test_known_products_cover_every_cube_once() -> None:
    from darts_aux.cubes import known_products

    keys = [p.key for p in known_products()]
    assert keys[:3] == ["arcticdem-2m", "arcticdem-10m", "arcticdem-32m"]
    assert len(keys) == len(set(keys)) == 3 + len(TCVIS_EDITIONS) + 1
    assert keys[-1] == "alphaearth-10m"  # one declaration; its years are cubes of their own (`at`)


# -- CRS and bbox --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("EPSG:3413", "EPSG:3413"), ("epsg:4326", "EPSG:4326"), ("urn:ogc:def:crs:EPSG::3413", "EPSG:3413"),
    ("urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:4326"), ("OGC:CRS84", "EPSG:4326"), ("EPSG:32652", "EPSG:32652"),
])
def test_parse_crs(text: str, expected: str) -> None:
    assert parse_crs(text) == expected


@pytest.mark.parametrize("text", ["EPSG:999999", "not a crs", ""])
def test_parse_crs_rejects_nonsense(text: str) -> None:
    with pytest.raises(InvalidRegionError, match="--crs: unknown CRS"):
        parse_crs(text)


def test_check_bbox_accepts_and_normalises() -> None:
    assert check_bbox((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize("bbox", [(3, 2, 1, 4), (1, 4, 3, 2), (1, 2, 1, 4),
                                  (0, 0, float("nan"), 1), (0, 0, float("inf"), 1)])
def test_check_bbox_rejects_empty_or_non_finite(bbox: tuple[float, ...]) -> None:
    with pytest.raises(EmptyRegionError, match="--bbox"):
        check_bbox(bbox)


def test_an_inverted_lon_bbox_hints_at_the_antimeridian() -> None:
    with pytest.raises(EmptyRegionError, match="past 180"):
        check_bbox((179.5, 65.9, -179.5, 66.1))


# -- GeoJSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [
    {"type": "Polygon", "coordinates": SQUARE},
    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": SQUARE}},
    {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [10.0, 60.0]}},
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "LineString", "coordinates": [[11, 61], [12, 61.5]]}},
    ]},
], ids=["geometry", "Feature", "FeatureCollection"])
def test_geojson_bounds(tmp_path: Path, document: dict) -> None:
    assert read_geojson(_write(tmp_path, document)) == ((10.0, 60.0, 12.0, 61.5), None)


def test_geojson_crs_member(tmp_path: Path) -> None:
    document = {"type": "Polygon", "coordinates": SQUARE,
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3413"}}}
    assert read_geojson(_write(tmp_path, document))[1] == "EPSG:3413"


@pytest.mark.parametrize(("document", "error", "message"), [
    ("{not json", InvalidRegionError, "not valid JSON"),
    ("[1, 2]", InvalidRegionError, "not GeoJSON"),
    ({"type": "Topology"}, InvalidRegionError, "not a geometry, Feature or FeatureCollection"),
    ({"type": "FeatureCollection", "features": []}, EmptyRegionError, "no geometry"),
    ({"type": "FeatureCollection"}, InvalidRegionError, "'features' list"),
    ({"type": "Point", "coordinates": [10, 60]}, EmptyRegionError, "no area"),
    ({"type": "Polygon", "coordinates": "nope"}, InvalidRegionError, "cannot be read"),
    ({"type": "Polygon", "coordinates": SQUARE, "crs": {"type": "name"}}, InvalidRegionError, "'crs' member"),
    ({"type": "Polygon", "coordinates": SQUARE, "crs": {"type": "name", "properties": {"name": "EPSG:0"}}},
     InvalidRegionError, "unknown CRS"),
], ids=["invalid JSON", "array", "Topology", "empty collection", "no features", "point", "bad coordinates",
        "crs without name", "unknown crs"])
def test_unreadable_geojson(tmp_path: Path, document: object, error: type[Exception], message: str) -> None:
    """The file's content is a region: the region's error classes, the file named as --geojson gave it."""
    with pytest.raises(error, match=message) as raised:
        read_geojson(_write(tmp_path, document))
    assert "--geojson" in str(raised.value) and not isinstance(raised.value, CliInputError)


def test_missing_or_binary_geojson(tmp_path: Path) -> None:
    with pytest.raises(CliInputError, match="cannot read the GeoJSON file"):
        read_geojson(tmp_path / "missing.geojson")
    binary = tmp_path / "roi.geojson"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidRegionError, match="not valid JSON"):
        read_geojson(binary)


# -- regions -------------------------------------------------------------------------------------


def test_bbox_default_crs_by_product() -> None:
    dem = region_geobox(arcticdem(32), bbox=(600_000, 3_100_000, 680_000, 3_130_000), crs=None, geojson=None)
    assert dem.crs.epsg == 3413 and dem.resolution.x == 32
    tc = region_geobox(tcvis(), bbox=(120.0, 60.0, 121.0, 61.0), crs=None, geojson=None)
    assert tc.crs.epsg == 4326


def test_bbox_in_the_cube_crs_is_the_cube_grid_window() -> None:
    product = arcticdem(10)
    bbox = (600_005.0, 3_099_995.0, 600_095.0, 3_100_097.0)  # not on the 10 m pixel edges: snapped outward
    window = roi_window(bbox_geobox(product, bbox, "EPSG:3413"), product.extent)
    assert window.shape == (11, 10)
    left, bottom, right, top = (product.extent.x0 + window.col0 * 10, product.extent.y0 - window.row1 * 10,
                                product.extent.x0 + window.col1 * 10, product.extent.y0 - window.row0 * 10)
    assert (left, bottom, right, top) == (600_000, 3_099_990, 600_100, 3_100_100)


def test_bbox_in_another_crs_is_exactly_its_footprint() -> None:
    product = arcticdem(32)
    box = (120.0, 60.0, 126.0, 62.0)
    window = roi_window(bbox_geobox(product, box, "EPSG:4326"), product.extent)
    reference = roi_window(GeoBox.from_bbox(box, "EPSG:4326", resolution=0.0005), product.extent)
    assert window == reference


def test_geojson_region_uses_the_file_crs_then_crs_then_4326(tmp_path: Path) -> None:
    product = arcticdem(32)
    square = {"type": "Polygon", "coordinates": [[[600_000, 3_100_000], [680_000, 3_100_000], [680_000, 3_130_000],
                                                  [600_000, 3_130_000], [600_000, 3_100_000]]]}
    plain = _write(tmp_path, square, "plain.geojson")
    with_crs = _write(tmp_path, {**square, "crs": {"type": "name", "properties": {"name": "EPSG:3413"}}}, "crs.geojson")
    expected = region_geobox(product, bbox=(600_000, 3_100_000, 680_000, 3_130_000), crs=None, geojson=None)
    assert region_geobox(product, bbox=None, crs=None, geojson=with_crs) == expected
    assert region_geobox(product, bbox=None, crs="EPSG:3413", geojson=plain) == expected
    lonlat = _write(tmp_path, {"type": "Polygon", "coordinates": SQUARE}, "lonlat.geojson")
    assert region_geobox(product, bbox=None, crs=None, geojson=lonlat).crs.epsg == 4326
    with pytest.raises(InvalidRegionError, match="drop --crs"):
        region_geobox(product, bbox=None, crs="EPSG:4326", geojson=with_crs)


@pytest.mark.parametrize(("bbox", "geojson"), [(None, None), ((0.0, 0.0, 1.0, 1.0), Path("roi.geojson"))])
def test_exactly_one_region_option(bbox: tuple[float, ...] | None, geojson: Path | None) -> None:
    with pytest.raises(InvalidRegionError, match="one of them"):
        region_geobox(arcticdem(32), bbox=bbox, crs=None, geojson=geojson)


def test_cli_errors_are_invalid_requests() -> None:
    assert issubclass(CliInputError, InvalidRequestError)


# -- outputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [("roi.nc", "netcdf"), ("a/b.NC4", "netcdf"), ("roi.tif", "geotiff"),
                                            ("ROI.TIFF", "geotiff")])
def test_output_kind(name: str, kind: str) -> None:
    assert output_kind(Path(name)) == kind


@pytest.mark.parametrize("name", ["roi.png", "roi", "roi.zarr"])
def test_output_kind_rejects_other_suffixes(name: str) -> None:
    with pytest.raises(CliInputError, match="must end in .nc"):
        output_kind(Path(name))


def test_coverage_map_path_has_one_file_per_cube() -> None:
    assert coverage_map_path(Path("maps/out.png"), arcticdem(2)) == Path("maps/out-arcticdem-2m.png")
    assert coverage_map_path(Path("out.png"), tcvis()) == Path("out-tcvis-2000-2019.png")


# -- GeoTIFF writer ------------------------------------------------------------------------------


def _dataset(geobox: GeoBox, variables: dict) -> object:
    import xarray as xr
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    return xr.Dataset({k: (geobox.dimensions, v) for k, v in variables.items()}, coords=coords, attrs={"product": "x"})


def test_geotiff_of_mixed_dtypes_in_strips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.array as da
    import numpy as np
    import rasterio

    from darts_aux import cli_support

    monkeypatch.setattr(cli_support, "GEOTIFF_STRIP_ROWS", 7)  # several strips, the last one short
    geobox = GeoBox.from_bbox((600_000, 3_100_000, 600_640, 3_100_800), "EPSG:3413", resolution=32)
    rng = np.random.default_rng(1)
    dem = rng.normal(100, 20, geobox.shape).astype("float32")
    dem[3:9, 5:11] = np.nan
    mask = (rng.random(geobox.shape) > 0.3).astype("uint8")
    dataset = _dataset(geobox, {"dem": da.from_array(dem, chunks=(10, 10)), "datamask": mask})
    out = tmp_path / "nested" / "roi.tif"
    line = cli_support.write_output(dataset, out)
    assert "float32" in line and "EPSG:3413" in line and "20 × 25 px" in line
    with rasterio.open(out) as src:
        assert src.descriptions == ("dem", "datamask") and src.dtypes == ("float32", "float32")
        assert src.crs.to_epsg() == 3413 and src.transform == geobox.affine and np.isnan(src.nodata)
        assert src.tags(1)["source_dtype"] == "float32" and src.tags(2)["source_dtype"] == "uint8"
        np.testing.assert_array_equal(src.read(1), dem)
        np.testing.assert_array_equal(src.read(2), mask)
    assert [p.name for p in out.parent.iterdir()] == ["roi.tif"], "no temporary file left behind"


def test_geotiff_of_uint8_bands_has_no_nodata(tmp_path: Path) -> None:
    import numpy as np
    import rasterio

    from darts_aux.cli_support import write_geotiff

    geobox = GeoBox.from_bbox((179.9, 65.9, 180.1, 66.0), "EPSG:4326", resolution=0.01)
    bands = {name: np.full(geobox.shape, i, dtype="uint8") for i, name in enumerate(("a", "b", "valid"))}
    write_geotiff(_dataset(geobox, bands), tmp_path / "tc.tif")
    with rasterio.open(tmp_path / "tc.tif") as src:
        assert src.nodata is None and src.dtypes == ("uint8",) * 3 and src.crs.to_epsg() == 4326
        assert [int(src.read(i + 1).max()) for i in range(3)] == [0, 1, 2]
        assert src.transform.almost_equals(geobox.affine)
