"""The Python API: load a region of a cube, filling missing chunks first.

A load of a settled region (the fast path) imports only what reading needs: the settings (pydantic), the fill
stack (sources, Prefect, pystac-client, rasterio) and odc-geo's xarray support (it imports rasterio) are
imported when first needed (tests/unit/test_fast_path_imports.py). The `.odc` accessor of the returned
Dataset imports odc-geo's xarray support on first use.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DartsAuxError
from .grid import ChunkGrid, PixelWindow, window_geobox, window_parts
from .location import DataLocation
from .manifest import Manifest, utc_now
from .products import ArcticDEMResolution, Product, arcticdem, tcvis
from .store import Cube, check_cube_folder, check_writable, cube_exists, cube_paths, disk_full_error
from .validate import check_persist, data_dir_path, region_window

if TYPE_CHECKING:
    from types import ModuleType

    import xarray as xr
    from odc.geo.geobox import GeoBox

    from .fill import FillReport
    from .settings import Settings

log = logging.getLogger(__name__)


def load_arcticdem(
    geobox: GeoBox,
    data_dir: str | Path | None,
    resolution: ArcticDEMResolution,
    buffer: int = 0,
    persist: bool = True,
) -> xr.Dataset:
    """ArcticDEM `dem` and `datamask` over `geobox` on the cube grid (EPSG:3413, no resampling).

    The geobox (any CRS) is taken to EPSG:3413 at the cube's resolution and padded by `buffer`
    cube pixels. Chunks the manifest does not list as settled are downloaded first (Prefect flow
    `fill_arcticdem`, or the same steps in-process; see DARTS_AUX_ORCHESTRATOR). `data_dir` is a folder or
    an `s3://bucket/prefix` URL; `None` uses DARTS_AUX_DATA_DIR. `persist=False` returns lazy dask-backed variables.
    """
    return load(arcticdem(resolution), geobox, data_dir, buffer, persist)


def load_tcvis(geobox: GeoBox, data_dir: str | Path | None = None, buffer: int = 0, persist: bool = True) -> xr.Dataset:
    """TCVIS `tc_brightness`, `tc_greenness`, `tc_wetness` (uint8) and `valid` over `geobox` (EPSG:4326 cube grid).

    The edition is DARTS_AUX_TCVIS_EDITION; each edition is its own cube. Masked source pixels have
    `valid == 0` (and 0 in the bands), so a real 0 is told apart from no data. Regions across the
    antimeridian come back as one Dataset whose longitudes continue past 180°.
    """
    from .settings import get_settings

    return load(tcvis(get_settings().tcvis_edition), geobox, data_dir, buffer, persist)


def load(product: Product, geobox: GeoBox, data_dir: str | Path | None, buffer: int, persist: bool) -> xr.Dataset:
    """Crop a product's cube to a geobox (+buffer), filling missing chunks first.

    Every argument is checked before anything is read, written or requested (darts_aux.validate).
    """
    persist = check_persist(persist)
    window = region_window(product, geobox, buffer)
    directory = resolve_data_dir(data_dir)
    if not is_settled(directory, product, window):
        settings = _settings()
        report = fill(directory, product, window, settings)
        report.raise_for_failures()
    return read_dataset(directory, product, window, persist)


def _settings(given: Settings | None = None) -> Settings:
    """The settings passed in, else those from the environment (pydantic is imported only when asked)."""
    if given is not None:
        return given
    from .settings import get_settings

    return get_settings()


def resolve_data_dir(data_dir: str | Path | None, settings: Settings | None = None) -> DataLocation:
    """The data directory: the argument, else DARTS_AUX_DATA_DIR (a folder or s3:// URL); checked, not created."""
    return data_dir_path(_settings(settings).data_dir if data_dir is None else data_dir)


def is_settled(data_dir: DataLocation, product: Product, window: PixelWindow, settings: Settings | None = None) -> bool:
    """True when every chunk of the window is full, or partial and checked within the revisit interval.

    A data directory or cube folder holding something else is refused here, before any source is asked.
    The settings (revisit interval) are consulted only when a chunk is partial.
    """
    check_cube_folder(data_dir, product)
    if not cube_exists(data_dir, product):
        return False
    grid = ChunkGrid(product)
    latest = Manifest(cube_paths(data_dir, product).manifest, grid).latest(window)
    chunks = grid.chunks(window)
    if any(c not in latest for c in chunks):
        return False
    if all(latest[c].status == "full" for c in chunks):
        return True
    now, revisit = utc_now(), _settings(settings).revisit_days * 86400
    return all(latest[c].is_settled(now, revisit) for c in chunks)


def fill(data_dir: DataLocation, product: Product, window: PixelWindow, settings: Settings) -> FillReport:
    """Fill the chunks of a window: through the product's Prefect flow, or inline when no Prefect API is set."""
    check_writable(data_dir, product)  # before the first request: an unwritable data_dir fails at once
    started = time.perf_counter()
    try:
        report = _run_fill(data_dir, product, window, settings)
    except DartsAuxError:
        raise
    except Exception as error:  # a full disk under staging or the store surfaces as a bare OSError
        full = disk_full_error(error, f"the {product.key} fill in {data_dir}")
        if full is None:
            raise
        raise full from error
    log.info("filled %s window %s in %.1f s", product.key, window, time.perf_counter() - started)
    return report


def _run_fill(data_dir: DataLocation, product: Product, window: PixelWindow, settings: Settings) -> FillReport:
    """Run the fill through the product's Prefect flow, or inline."""
    from .fill import FillContext, run_inline

    if use_prefect(settings):
        if product.key.startswith("tcvis"):
            from flows.tcvis import run_fill_tcvis as run_flow
        else:
            from flows.arcticdem import run_fill_arcticdem as run_flow
        return run_flow(product, window, data_dir, settings)
    return run_inline(FillContext(product, data_dir, settings), window)


def use_prefect(settings: Settings) -> bool:
    """Whether fills go through Prefect: forced by the setting, or 'auto' with a Prefect API configured."""
    if settings.orchestrator != "auto":
        return settings.orchestrator == "prefect"
    import os

    if os.environ.get("PREFECT_API_URL"):
        return True
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def read_dataset(data_dir: DataLocation, product: Product, window: PixelWindow, persist: bool) -> xr.Dataset:
    """The window of the cube as an xarray Dataset with odc-geo coordinates (numpy or lazy dask)."""
    import xarray as xr

    cube = Cube.open(data_dir, product)
    arrays = cube.read(window) if persist else lazy_window(cube, window)
    geobox = window_geobox(product.extent, window)
    coords = geobox_coords(geobox)

    dims = geobox.dimensions  # ("y", "x"), or ("latitude", "longitude") on a lon/lat grid
    variables = {name: _variable(dims, data, {"grid_mapping": CRS_COORD}) for name, data in arrays.items()}
    attrs = {"product": product.key, "source_collection": product.collection}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _variable(dims: tuple[str, ...], data: Any, attrs: dict[str, Any]) -> xr.Variable:
    """An xarray Variable over a numpy or dask array as it is.

    xarray's conversion of plain data would leave such an array unchanged, but first imports dask.array to test for
    one (~0.1 s in a fresh process); `fastpath` skips that test (tests/unit/test_fast_path_imports.py).
    """
    import xarray as xr

    return xr.Variable(dims, data, attrs, fastpath=True)


CRS_COORD = "spatial_ref"
"""Name of the scalar coordinate holding the CRS (CF grid mapping), as odc-geo names it."""


def geobox_coords(geobox: GeoBox) -> dict[str, xr.DataArray]:
    """odc.geo.xr.xr_coords(geobox, crs_coord_name="spatial_ref") for the cube's axis-aligned window geoboxes.

    Built here because odc.geo.xr imports rasterio (and boto3), a tenth of a second a fresh process need not
    spend; tests/unit/test_fast_path_imports.py checks the result equals odc-geo's. Also makes `.odc` work on
    the result (`_install_odc_accessors`).
    """
    import numpy as np
    import xarray as xr

    _install_odc_accessors(xr)
    if not geobox.axis_aligned:  # never for a cube window; odc-geo's own (pixel) coordinates then
        from odc.geo.xr import xr_coords as odc_xr_coords

        return odc_xr_coords(geobox, crs_coord_name=CRS_COORD)
    crs = geobox.crs
    attrs = {"crs": str(crs)}
    coords: dict[str, xr.DataArray] = {}
    for name, c in zip(geobox.dimensions, geobox.coordinates.values()):
        axis = _variable((name,), c.values, {"units": c.units, "resolution": c.resolution, **attrs})
        coords[name] = xr.DataArray(axis, coords={name: _variable((name,), c.values, {})}, dims=(name,))
    cf = crs.proj.to_cf()
    crs_wkt = cf.get("crs_wkt", None) or crs.wkt
    cf["GeoTransform"] = " ".join(f"{x:.24f}".rstrip("0").rstrip(".") for x in geobox.transform.to_gdal())
    epsg = _variable((), np.asarray(0 if crs.epsg is None else crs.epsg, "int32"), {"spatial_ref": crs_wkt, **cf})
    coords[CRS_COORD] = xr.DataArray(epsg, name=CRS_COORD)
    return coords


class _LazyOdcAccessor:
    """`.odc` on xarray objects until odc.geo.xr is imported: the first use imports it, which registers the real one.

    Read on the class it raises AttributeError, so odc-geo's registration finds nothing to override (no warning).
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError("odc")
        from odc.geo import xr as odc_xr  # registers ODCExtensionDs/Da as `.odc` in place of this descriptor

        if isinstance(_class_attribute(type(obj), "odc"), _LazyOdcAccessor):  # odc-geo registered before our install
            import xarray as xr

            return (odc_xr.ODCExtensionDs if isinstance(obj, xr.Dataset) else odc_xr.ODCExtensionDa)(obj)
        return obj.odc


def _class_attribute(cls: type, name: str) -> Any:
    """The attribute as stored in the class or its bases (no descriptor called)."""
    return next((c.__dict__[name] for c in cls.__mro__ if name in c.__dict__), None)


def _install_odc_accessors(xr: ModuleType) -> None:
    """Give Dataset and DataArray a lazy `.odc` unless they have one already.

    Importing odc-geo's xarray support (odc.geo.xr, whichever module imports it) registers its accessors as class
    attributes, so a class with an `odc` attribute keeps it; no private module of odc-geo is consulted.
    """
    for cls in (xr.Dataset, xr.DataArray):
        if _class_attribute(cls, "odc") is None:
            cls.odc = _LazyOdcAccessor()


def lazy_window(cube: Cube, window: PixelWindow) -> dict:
    """Dask arrays over just the window (never a graph over the whole extent), pinned to one snapshot."""
    import dask.array as da

    from .store import WindowReader

    arrays = cube.arrays(cube.snapshot_id())
    n = cube.product.read_chunk
    out = {}
    for name, array in arrays.items():
        pieces = []
        for part, _ in window_parts(cube.product.extent, window):
            chunks = (_aligned_chunks(part.row0, part.row1, n), _aligned_chunks(part.col0, part.col1, n))
            pieces.append(da.from_array(WindowReader(array, part), chunks=chunks, asarray=True, lock=False,
                                        name=f"{cube.product.key}-{name}-{part.row0}-{part.col0}-{id(array)}"))
        out[name] = pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=1)
    return out


def _aligned_chunks(start: int, stop: int, step: int) -> tuple[int, ...]:
    """Dask chunk sizes along one axis that follow the store's chunk boundaries."""
    edges = [start, *range((start // step + 1) * step, stop, step), stop]
    return tuple(b - a for a, b in zip(edges, edges[1:]) if b > a)
