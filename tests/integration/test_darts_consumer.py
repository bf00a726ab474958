"""What DARTS's preprocessing does with the two datasets works: reproject onto the optical scene's UTM geobox.

DARTS loads the DEM over the scene's geobox buffered by its TPI radius and both datasets offline on compute nodes,
reprojects them with `ds.odc.reproject(geobox, resampling="cubic")`, and asserts that x/y equal the optical
scene's coordinates exactly. Here the optical scene is a UTM zone 51 N geobox inside the local catalog.
"""

from __future__ import annotations

import numpy as np
import odc.geo.xr  # noqa: F401 - registers `.odc.reproject`, as DARTS imports it
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import download_arcticdem, download_tcvis, load_arcticdem, load_tcvis
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine

UTM = "EPSG:32651"
TPI_RADIUS_M = 400  # DARTS's outer TPI radius in metres
# An optical scene's footprint in UTM 51 N across the local catalog's coast (EPSG:3413 y = 3,300 km): about half
# of it has ArcticDEM data, the rest none.
SCENE = (460_000.0, 6_592_000.0, 466_000.0, 6_598_000.0)


@pytest.mark.parametrize("resolution", [10, 3])
def test_dem_and_tcvis_reproject_onto_the_optical_geobox(resolution: int, use_catalog: LocalCatalog,
                                                         use_earth_engine: LocalEarthEngine, inline: None,
                                                         tmp_path) -> None:
    optical = GeoBox.from_bbox(SCENE, UTM, resolution=resolution)
    pad = TPI_RADIUS_M // resolution
    buffered = optical.pad(pad)  # as DARTS buffers the scene's geobox by the TPI radius before the DEM load
    assert download_arcticdem(optical, tmp_path, 32, buffer=16).ok
    assert download_tcvis(optical, tmp_path).ok

    use_catalog.reset_log()
    use_earth_engine.reset_log()
    dem = load_arcticdem(buffered, tmp_path, 32, buffer=16, offline=True)
    tcvis = load_tcvis(optical, tmp_path, buffer=4, offline=True)
    assert use_catalog.requests() == [] and use_earth_engine.requests() == []

    dem_buffered = dem.odc.reproject(buffered, resampling="cubic")
    np.testing.assert_array_equal(dem_buffered.x.values, buffered.coords["x"].values)
    np.testing.assert_array_equal(dem_buffered.y.values, buffered.coords["y"].values)
    dem_optical = dem_buffered.isel(x=slice(pad, -pad), y=slice(pad, -pad))
    np.testing.assert_array_equal(dem_optical.x.values, optical.coords["x"].values)
    np.testing.assert_array_equal(dem_optical.y.values, optical.coords["y"].values)
    assert dem_buffered.odc.geobox == buffered and dem_optical.odc.geobox == optical
    assert dem_optical.dem.dtype == np.float32
    values = dem_optical.dem.values
    assert 0.2 < np.isfinite(values).mean() < 0.8, "the scene crosses the coast"
    assert not (values == -9999).any()
    cube_values = dem.dem.values
    assert np.nanmin(values) >= np.nanmin(cube_values) - 50 and np.nanmax(values) <= np.nanmax(cube_values) + 50

    tc = tcvis.odc.reproject(optical, resampling="cubic")
    np.testing.assert_array_equal(tc.x.values, optical.coords["x"].values)
    np.testing.assert_array_equal(tc.y.values, optical.coords["y"].values)
    for name in ("tc_brightness", "tc_greenness", "tc_wetness", "valid"):
        assert tc[name].dtype == np.uint8, name
    assert tc.tc_brightness.values.any() and set(np.unique(tc.valid.values)) <= {0, 1}
