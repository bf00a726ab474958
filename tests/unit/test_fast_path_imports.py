"""A load of a settled region imports no part of the fill stack: no Prefect, no STAC client, no Earth Engine.

Nor odc-geo's xarray support (it imports rasterio and boto3): the coordinates are built by darts_aux, and the
`.odc` accessor of the result imports odc.geo.xr on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from darts_aux.grid import ChunkGrid, PixelWindow, roi_window, window_geobox
from darts_aux.manifest import ChunkRecord, Manifest, utc_now
from darts_aux.products import arcticdem, tcvis
from darts_aux.store import Cube

BOUNDS = (600_000.0, 3_150_000.0, 640_000.0, 3_190_000.0)
KEPT_OUT = ("prefect", "flows", "darts_aux.flows", "pystac_client", "pystac", "ee", "httpx", "geopandas", "matplotlib",
            "pydantic_settings", "darts_aux.fill", "darts_aux.sources", "darts_aux.settings", "darts_aux.staging",
            "rasterio", "boto3", "botocore", "odc.geo.xr", "odc.geo._xr_interop", "filelock", "dask.array")
"""What a fast-path load must not import: the fill and download stack, the settings (pydantic), odc-geo's
xarray support with rasterio (and the boto3 it pulls in), the commit lock's filelock, and dask.array (a
persisted load holds numpy arrays)."""

CHILD = """
import json, sys, warnings
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
ds = load_arcticdem(GeoBox.from_bbox({bounds}, "EPSG:3413", resolution=32), {data_dir!r}, 32)
loaded = sorted(sys.modules)
from xarray.core.extensions import AccessorRegistrationWarning
warnings.simplefilter("error", AccessorRegistrationWarning)  # odc-geo's registration overrides nothing
assert ds.dem.shape == ds.odc.geobox.shape  # the first use of .odc imports odc.geo.xr
assert ds.dem.odc.crs.epsg == 3413
import odc.geo.xr
assert type(ds.odc) is odc.geo.xr.ODCExtensionDs and type(ds.datamask.odc) is odc.geo.xr.ODCExtensionDa
print(json.dumps(loaded))
"""


def _settled_cube(data_dir: Path) -> None:
    """A 32 m cube whose manifest lists every chunk of BOUNDS as full (no pixels: reads give fill values)."""
    from odc.geo.geobox import GeoBox

    product = arcticdem(32)
    Cube.open_or_create(data_dir, product)
    grid = ChunkGrid(product)
    window = roi_window(GeoBox.from_bbox(BOUNDS, "EPSG:3413", resolution=32), product.extent)
    cube_manifest = Manifest(data_dir / product.key / "manifest", grid)
    cube_manifest.append([ChunkRecord(c, "full", ("item",), (), 1.0, utc_now(), "SNAP") for c in grid.chunks(window)])


def test_settled_load_in_a_fresh_process_imports_no_fill_stack(tmp_path: Path) -> None:
    _settled_cube(tmp_path)
    code = CHILD.format(bounds=BOUNDS, data_dir=str(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DARTS_AUX_STAC_URL": "http://127.0.0.1:9/unused/"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    imported = sorted(m for m in loaded if any(m == k or m.startswith(k + ".") for k in KEPT_OUT))
    assert imported == []


@pytest.mark.parametrize(
    ("product", "window"),
    [
        (arcticdem(2), PixelWindow(482_390, 482_400, 2_263_167, 2_263_180)),
        (arcticdem(32), PixelWindow(0, 7, 115_000, 115_003)),
        (tcvis(), PixelWindow(90_000, 90_010, 1_000, 1_012)),
        (tcvis(), PixelWindow(90_000, 90_004, 1_335_830, 1_335_840)),  # past 180°: continues at column 0
    ],
    ids=["arcticdem-2m", "arcticdem-32m", "tcvis", "tcvis-antimeridian"],
)
def test_coordinates_are_odc_geos(product: object, window: PixelWindow) -> None:
    """The fast path's own coordinates equal odc.geo.xr.xr_coords(...): values, dtypes, attrs and their order."""
    import xarray as xr
    from odc.geo.xr import xr_coords

    from darts_aux.api import geobox_coords

    geobox = window_geobox(product.extent, window)
    ours, theirs = geobox_coords(geobox), xr_coords(geobox, crs_coord_name="spatial_ref")
    assert list(ours) == list(theirs)
    for name in theirs:
        xr.testing.assert_identical(ours[name], theirs[name])
        assert list(ours[name].attrs.items()) == list(theirs[name].attrs.items())
        assert ours[name].dtype == theirs[name].dtype


def test_coordinates_of_a_geobox_without_crs_are_odc_geos() -> None:
    """A geobox that names no CRS gets odc-geo's own coordinates (no spatial_ref to describe), not an error."""
    import xarray as xr
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from darts_aux.api import geobox_coords

    geobox = GeoBox((3, 4), Affine(10.0, 0.0, 100.0, 0.0, -10.0, 200.0), None)
    ours, theirs = geobox_coords(geobox), xr_coords(geobox, crs_coord_name="spatial_ref")
    assert list(ours) == list(theirs) == ["y", "x"]
    for name in theirs:
        xr.testing.assert_identical(ours[name], theirs[name])
    assert ours["x"].values.tolist() == [105.0, 115.0, 125.0, 135.0]
    assert ours["y"].values.tolist() == [195.0, 185.0, 175.0]
