"""The `.odc` accessor of a loaded Dataset is odc-geo's whichever is imported first: odc.geo.xr or darts_aux's read.

darts_aux gives xarray a lazy `.odc` only where odc-geo has not registered its own; each order runs in a fresh
process, where nothing else has imported odc-geo's xarray support yet.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import sys, warnings
from xarray.core.extensions import AccessorRegistrationWarning
warnings.simplefilter("error", AccessorRegistrationWarning)  # neither side overrides the other's accessor
if {odc_first}:
    import odc.geo.xr
from darts_aux.api import geobox_coords
from darts_aux.grid import PixelWindow, window_geobox
from darts_aux.products import arcticdem
import xarray as xr
geobox = window_geobox(arcticdem(32).extent, PixelWindow(0, 7, 115_000, 115_003))
ds = xr.Dataset({{"dem": (geobox.dimensions, [[0.0] * 3] * 7)}}, coords=geobox_coords(geobox))
was_imported = "odc.geo.xr" in sys.modules
assert ds.odc.geobox == geobox and ds.dem.odc.geobox == geobox
import odc.geo.xr
assert type(ds.odc) is odc.geo.xr.ODCExtensionDs and type(ds.dem.odc) is odc.geo.xr.ODCExtensionDa
assert ds.odc is ds.odc  # xarray's own accessor, cached per object, not one rebuilt on each use
print(was_imported)
"""


@pytest.mark.parametrize("odc_first", [True, False], ids=["odc-geo-imported-first", "darts-aux-first"])
def test_odc_accessor_is_odc_geos_in_either_import_order(odc_first: bool) -> None:
    code = CHILD.format(odc_first=odc_first)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(odc_first)  # odc-geo's xarray support stayed unimported until `.odc` was used
