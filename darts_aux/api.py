"""The Python API, documented here in one place; each name is also importable from `darts_aux`.

The functions:

- `load_arcticdem`, `load_tcvis`: a region of a cube, missing chunks filled first, or offline: read only.
- `load`: the same for any product, given as a declaration or by key (built-in, registered or installed).
- `download_arcticdem`, `download_tcvis`: prefetch the chunks an area of interest's geometries intersect.
- `coverage`: what a cube holds, as a GeoDataFrame of chunk footprints.

A load of a settled region (the fast path) imports only what reading needs: the settings (pydantic), the fill
stack (sources, Prefect, pystac-client, rasterio) and odc-geo's xarray support (it imports rasterio) are
imported when first needed (tests/unit/test_fast_path_imports.py). The `.odc` accessor of the returned
Dataset imports odc-geo's xarray support on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DartsAuxError, InvalidRequestError
from .grid import ChunkGrid, PixelWindow, window_geobox, window_parts
from .location import DataLocation
from .manifest import Manifest, utc_now
from .offline import check_offline, require_fetched
from .products import ArcticDEMResolution, Product, StepLabels, alphaearth, arcticdem, tcvis
from .store import Cube, check_cube_folder, check_writable, cube_exists, cube_paths, disk_full_error
from .validate import check_persist, data_dir_path, region_window

if TYPE_CHECKING:
    from types import ModuleType

    import geopandas as gpd
    import xarray as xr
    from odc.geo.geobox import GeoBox

    from .aoi import AOI
    from .download import DownloadReport
    from .fill import FillReport
    from .settings import Settings

log = logging.getLogger(__name__)


def load_arcticdem(
    geobox: GeoBox,
    data_dir: str | Path | None,
    resolution: ArcticDEMResolution,
    buffer: int = 0,
    persist: bool = True,
    *,
    offline: bool = False,
) -> xr.Dataset:
    """ArcticDEM `dem` (float32, NaN for no data) and `datamask` (uint8) over a geobox, on the cube grid.

    The geobox (any CRS) is taken to EPSG:3413 at the cube's resolution and padded by `buffer` cube pixels;
    the cube is cropped to that window, never resampled (reproject the result, e.g. with `.odc.reproject`).
    Chunks the manifest does not list as settled are downloaded first (Prefect flow `fill_arcticdem`, or the
    same steps in-process; see DARTS_AUX_ORCHESTRATOR), unless the load is offline.

    Args:
        geobox: The region, an odc-geo GeoBox in any CRS.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        resolution: 2, 10 or 32 (metres): each resolution is its own cube.
        buffer: Cube pixels added on every side of the region (e.g. a terrain index's radius).
        persist: True returns numpy-backed variables, False lazy dask-backed ones.
        offline: Download nothing (also DARTS_AUX_OFFLINE=1): chunks the cube holds, full or partial, are read
            as they are; a chunk never fetched raises OfflineError at once. No connection to any source is opened.

    Returns:
        An xarray Dataset with `x`/`y` coordinates of the cube grid and a `spatial_ref` (EPSG:3413) coordinate.

    Raises:
        InvalidRequestError: An argument cannot be served (its subclasses say which: region, buffer, resolution,
            data_dir); raised before anything is read or requested.
        OfflineError: Offline, and chunks of the region were never fetched; the message names the
            `darts-aux fetch` command and the `download_arcticdem(...)` call that prefetch them.
        SourceError: A source failed after retries (the chunks it could fill are kept).

    Example:
        >>> from odc.geo.geobox import GeoBox
        >>> geobox = GeoBox.from_bbox((600_000, 3_150_000, 610_000, 3_160_000), "EPSG:3413", resolution=10)
        >>> ds = load_arcticdem(geobox, "/data/darts-aux", 10, buffer=16, offline=True)  # doctest: +SKIP
    """
    return load(arcticdem(resolution), geobox, data_dir, buffer, persist, offline)


def load_tcvis(geobox: GeoBox, data_dir: str | Path | None = None, buffer: int = 0, persist: bool = True, *,
               offline: bool = False) -> xr.Dataset:
    """TCVIS `tc_brightness`, `tc_greenness`, `tc_wetness` (uint8) and `valid` over a geobox, on the cube grid.

    The cube is the global EPSG:4326 grid of the edition set in DARTS_AUX_TCVIS_EDITION (each edition is its
    own cube). Masked source pixels have `valid == 0` (and 0 in the bands), so a real 0 is told apart from no
    data. Regions across the antimeridian come back as one Dataset whose longitudes continue past 180°.
    Missing chunks are downloaded from Earth Engine first, unless the load is offline.

    Args:
        geobox: The region, an odc-geo GeoBox in any CRS.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        buffer: Cube pixels added on every side of the region.
        persist: True returns numpy-backed variables, False lazy dask-backed ones.
        offline: Download nothing (also DARTS_AUX_OFFLINE=1): chunks the cube holds are read as they are; a chunk
            never fetched raises OfflineError at once. No connection to Earth Engine is opened.

    Returns:
        An xarray Dataset with `latitude`/`longitude` coordinates and a `spatial_ref` (EPSG:4326) coordinate.

    Raises:
        InvalidRequestError: An argument cannot be served; raised before anything is read or requested.
        OfflineError: Offline, and chunks of the region were never fetched; the message names the
            `darts-aux fetch` command and the `download_tcvis(...)` call that prefetch them.
        ConfigurationError: Earth Engine is not configured (DARTS_AUX_EE_PROJECT) when a download is needed.
        SourceError: Earth Engine failed after retries.

    Example:
        >>> from odc.geo.geobox import GeoBox
        >>> geobox = GeoBox.from_bbox((-150.1, 70.0, -149.9, 70.1), "EPSG:4326", resolution=0.0003)
        >>> ds = load_tcvis(geobox, "/data/darts-aux", offline=True)  # doctest: +SKIP
    """
    from .settings import get_settings

    return load(tcvis(get_settings().tcvis_edition), geobox, data_dir, buffer, persist, offline)


def load_alphaearth(geobox: GeoBox, data_dir: str | Path | None = None, years: StepLabels = None, buffer: int = 0,
                    persist: bool = True, *, offline: bool = False) -> xr.Dataset:
    """AlphaEarth annual embeddings `A00`…`A63` (float32, NaN where masked) over a geobox, one `time` step per year.

    The cube is the ArcticDEM 10 m grid (EPSG:3413), one cube per year; the geobox is taken to it and padded by
    `buffer` pixels, never resampled. Only the (chunk, year) pairs the cube lacks are fetched from Earth Engine
    (`GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`, the mosaic of each year's images), unless the load is offline.

    Args:
        geobox: The region, an odc-geo GeoBox in any CRS.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        years: One year (2019), several ([2019, 2024]) or None for every year 2017–2025.
        buffer: Cube pixels added on every side of the region.
        persist: True returns numpy-backed variables, False lazy dask-backed ones.
        offline: Download nothing (also DARTS_AUX_OFFLINE=1); a (chunk, year) never fetched raises OfflineError.

    Returns:
        An xarray Dataset with dimensions (time, y, x): 64 float32 variables, `time` the first day of each year.

    Raises:
        InvalidRequestError: An argument cannot be served (UnknownTimeStepError for a year the collection lacks).
        ConfigurationError: Earth Engine is not configured (DARTS_AUX_EE_PROJECT) and chunks need a download.
        OfflineError: Offline, and chunks of the region were never fetched for a year asked for.
        SourceError: Earth Engine failed after retries (the chunks it could fill are kept).

    Example:
        >>> geobox = GeoBox.from_bbox((600_000, 3_150_000, 610_000, 3_160_000), "EPSG:3413", resolution=10)
        >>> ds = load_alphaearth(geobox, "/data/darts-aux", years=[2019, 2024])  # doctest: +SKIP
        >>> ds.A00.sel(time="2019")  # doctest: +SKIP
    """
    return load(alphaearth(), geobox, data_dir, buffer, persist, offline, steps=years)


def download_alphaearth(aoi: AOI, data_dir: str | Path | None = None, *, years: StepLabels = None, crs: Any = None,
                        buffer: int = 0, progress: bool | None = None) -> DownloadReport:
    """Prefetch the AlphaEarth chunks an area of interest needs, for the years asked for (None: all).

    Same rules as `download_arcticdem`, per year: only the chunks the geometries intersect, (chunk, year) pairs
    already in the cube skipped, through Prefect or in-process. The report counts (chunk, year) pairs.

    Args:
        aoi: A GeoDataFrame or GeoSeries (any CRS, any number of rows), a shapely geometry or a
            (minx, miny, maxx, maxy) bbox with `crs`, an odc-geo Geometry, or an odc-geo GeoBox.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        years: One year (2024), several, or None for every year 2017–2025.
        crs: The CRS of a shapely geometry or bbox; not needed for the other kinds.
        buffer: Cube pixels added around every geometry.
        progress: Show a bar of chunks on stderr (per year); None shows it when stderr is a terminal.

    Returns:
        A DownloadReport over all (chunk, year) pairs; failure lines name their year's cube.

    Raises:
        InvalidRequestError: The AOI, a year, the buffer or data_dir cannot be used (before any request).
        ConfigurationError: Earth Engine is not configured (DARTS_AUX_EE_PROJECT) and chunks need a download.
        OfflineError: DARTS_AUX_OFFLINE is set and chunks would need a download.

    Example:
        >>> report = download_alphaearth(scenes, "/data/darts-aux", years=2024)  # doctest: +SKIP
    """
    return download_product(alphaearth(), aoi, data_dir, crs, buffer, progress, steps=years)


def load(product: Product | str, geobox: GeoBox, data_dir: str | Path | None = None, buffer: int = 0,
         persist: bool = True, offline: bool = False, steps: StepLabels = None) -> xr.Dataset:
    """Any product's variables over a geobox, on its cube grid: missing chunks filled first, or offline: read only.

    The generic form of `load_arcticdem` and `load_tcvis`, for the built-in cubes and for products registered with
    `register_product` or declared by an installed package (entry point group `darts_aux.products`; see
    docs/adding-a-product.md). The geobox (any CRS) is taken to the cube's CRS and pixel grid and padded by
    `buffer` cube pixels; the cube is cropped to that window, never resampled. Every argument is checked before
    anything is read, written or requested.

    Args:
        product: A Product declaration, or the key of a known one ('arcticdem-32m', 'tcvis-2000-2019', a
            registered key; 'tcvis' is the edition in DARTS_AUX_TCVIS_EDITION).
        geobox: The region, an odc-geo GeoBox in any CRS.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        buffer: Cube pixels added on every side of the region.
        persist: True returns numpy-backed variables, False lazy dask-backed ones.
        offline: Download nothing (also DARTS_AUX_OFFLINE=1): chunks the cube holds are read as they are; a chunk
            never fetched raises OfflineError at once.
        steps: For a product with a time axis: one step's label (e.g. 2019), several, or None for all. Only the
            (chunk, step) pairs the cube lacks are filled.

    Returns:
        An xarray Dataset of the product's variables (no-data pixels hold each variable's fill value) with the
        cube grid's coordinates and a `spatial_ref` coordinate; a product with a time axis adds a leading `time`
        dimension (each step's first day) in the order the product declares its steps.

    Raises:
        InvalidRequestError: An argument cannot be served, or the key names no known product (UnknownProductError).
        OfflineError: Offline, and chunks of the region were never fetched.
        SourceError: A source failed after retries (the chunks it could fill are kept).

    Example:
        >>> from odc.geo.geobox import GeoBox
        >>> geobox = GeoBox.from_bbox((600_000, 3_150_000, 610_000, 3_160_000), "EPSG:3413", resolution=32)
        >>> ds = load("arcticdem-32m", geobox, "/data/darts-aux", offline=True)  # doctest: +SKIP
    """
    product = product if isinstance(product, Product) else product_named(product)
    cubes = step_cubes(product, steps)
    persist = check_persist(persist)
    offline = check_offline(offline)
    window = region_window(product, geobox, buffer)
    directory = resolve_data_dir(data_dir)
    reports = []
    for cube in cubes:
        if not is_settled(directory, cube, window):
            settings = _settings()
            if offline or settings.offline:
                require_fetched(directory, cube, window)
            else:
                reports.append(fill(directory, cube, window, settings))
    for report in reports:  # every step was filled as far as it could be before the first failure is raised
        report.raise_for_failures()
    if not product.has_time_axis:
        return read_dataset(directory, product, window, persist)
    from .timeaxis import stack_steps

    return stack_steps(product, [read_dataset(directory, cube, window, persist) for cube in cubes], cubes)


def step_cubes(product: Product, steps: StepLabels) -> list[Product]:
    """The cubes a load or download reads: the product's, or those of the time steps asked for (all for None)."""
    if product.has_time_axis:
        return [product.at(step.label) for step in product.steps_for(steps)]
    if steps is not None:
        from .errors import UnknownTimeStepError

        raise UnknownTimeStepError(f"{product.key} has no time axis, so it takes no steps (got {steps!r}); load it "
                                   f"without steps.")
    return [product]


def product_named(key: str) -> Product:
    """A known product by its key; 'tcvis' is the edition in DARTS_AUX_TCVIS_EDITION (the settings read only then)."""
    if not isinstance(key, str):
        raise InvalidRequestError(f"product must be a Product or a product key (str), got {type(key).__name__}.")
    if key == "tcvis":
        return tcvis(_settings().tcvis_edition)
    from .registry import product_by_key

    return product_by_key(key)


def download_arcticdem(aoi: AOI, data_dir: str | Path | None, resolution: ArcticDEMResolution, *, crs: Any = None,
                       buffer: int = 0, progress: bool | None = None) -> DownloadReport:
    """Prefetch the ArcticDEM chunks an area of interest needs, so later loads (also offline) read them from the cube.

    Only chunks that the AOI's geometries themselves intersect are filled, not their bounding box: a long diagonal
    corridor or scattered scene footprints cost only the chunks under them. A GeoBox stands for a load of it: its
    chunks are exactly those `load_arcticdem(geobox, ...)` reads. Chunks the manifest settles (full, or partial and
    checked within DARTS_AUX_REVISIT_DAYS) are skipped, so a second call asks no source anything. The rest is
    filled by the Prefect flow `download_chunks` when a Prefect API is configured (DARTS_AUX_ORCHESTRATOR), else
    in-process with the same steps and retries.

    Args:
        aoi: A GeoDataFrame or GeoSeries (any CRS, any number of rows), a shapely geometry or a
            (minx, miny, maxx, maxy) bbox with `crs`, an odc-geo Geometry, or an odc-geo GeoBox.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        resolution: 2, 10 or 32 (metres).
        crs: The CRS of a shapely geometry or bbox (anything pyproj reads, e.g. 'EPSG:4326'); not needed for the
            other kinds, which carry their own.
        buffer: Cube pixels added around every geometry (use the `buffer` the loads will use).
        progress: Show a bar of chunks on stderr; None shows it when stderr is a terminal.

    Returns:
        A DownloadReport: chunks in the area, fetched now, already full, partial, bytes read, seconds and failures
        (failed reads keep their chunks partial; `report.raise_for_failures()` raises them).

    Raises:
        InvalidRequestError: The AOI, resolution, buffer or data_dir cannot be used (before any request).
        OutsideExtentError: The AOI does not touch the cube's extent.
        OfflineError: DARTS_AUX_OFFLINE is set and chunks would need a download.

    Example:
        >>> import geopandas as gpd
        >>> scenes = gpd.read_file("footprints.gpkg")  # doctest: +SKIP
        >>> report = download_arcticdem(scenes, "/data/darts-aux", 10, buffer=16)  # doctest: +SKIP
        >>> report.chunks_fetched, report.failures  # doctest: +SKIP
    """
    return download_product(arcticdem(resolution), aoi, data_dir, crs, buffer, progress)


def download_tcvis(aoi: AOI, data_dir: str | Path | None = None, *, crs: Any = None, buffer: int = 0,
                   progress: bool | None = None) -> DownloadReport:
    """Prefetch the TCVIS chunks an area of interest needs (edition: DARTS_AUX_TCVIS_EDITION).

    Same rules as `download_arcticdem`: only the chunks the geometries intersect, settled chunks skipped, through
    Prefect or in-process. A bbox in EPSG:4326 may continue past 180° to cross the antimeridian.

    Args:
        aoi: A GeoDataFrame or GeoSeries (any CRS, any number of rows), a shapely geometry or a
            (minx, miny, maxx, maxy) bbox with `crs`, an odc-geo Geometry, or an odc-geo GeoBox.
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        crs: The CRS of a shapely geometry or bbox; not needed for the other kinds.
        buffer: Cube pixels added around every geometry.
        progress: Show a bar of chunks on stderr; None shows it when stderr is a terminal.

    Returns:
        A DownloadReport (see `download_arcticdem`).

    Raises:
        InvalidRequestError: The AOI, buffer or data_dir cannot be used (before any request).
        ConfigurationError: Earth Engine is not configured (DARTS_AUX_EE_PROJECT) and chunks need a download.
        OfflineError: DARTS_AUX_OFFLINE is set and chunks would need a download.

    Example:
        >>> report = download_tcvis((-151.0, 69.5, -149.0, 70.5), "/data/darts-aux", crs="EPSG:4326")  # doctest: +SKIP
    """
    from .settings import get_settings

    return download_product(tcvis(get_settings().tcvis_edition), aoi, data_dir, crs, buffer, progress)


def download_product(product: Product, aoi: AOI, data_dir: str | Path | None, crs: Any, buffer: int,
                     progress: bool | None, steps: StepLabels = None) -> DownloadReport:
    """Prefetch a product's chunks under an AOI (of each time step asked for): arguments checked before any request."""
    from .aoi import aoi_chunks
    from .download import combined_report, download

    if progress is not None and not isinstance(progress, bool):
        raise InvalidRequestError(f"progress must be True, False or None (a bar when stderr is a terminal), got "
                                  f"{progress!r}.")
    cubes = step_cubes(product, steps)
    chunks = aoi_chunks(product, aoi, crs, buffer)
    settings = _settings()
    directory = resolve_data_dir(data_dir, settings)
    reports = []
    for cube in cubes:
        with _disk_full_typed(f"the {cube.key} download in {directory}"):
            reports.append(download(cube, chunks, directory, settings, progress))
    return reports[0] if not product.has_time_axis else combined_report(product.key, reports)


def coverage(data_dir: str | Path | None, product: str, aoi: AOI | None = None, *,
             crs: Any = None) -> gpd.GeoDataFrame:
    """What a cube holds: the manifest's latest row per chunk as a GeoDataFrame of chunk footprints.

    One line plots it in a notebook: `coverage(data_dir, "arcticdem-32m").plot(column="status", legend=True)`.
    `darts-aux status` counts the same rows. Reads only the manifest; no source is asked.

    Args:
        data_dir: A folder or an `s3://bucket/prefix` URL; None uses DARTS_AUX_DATA_DIR.
        product: The cube: 'arcticdem-2m', 'arcticdem-10m', 'arcticdem-32m', 'tcvis' (the edition in
            DARTS_AUX_TCVIS_EDITION) or an edition's cube such as 'tcvis-2000-2019'.
        aoi: Only the chunks this area needs (same kinds as download_*'s `aoi`); chunks it needs that were never
            fetched are added with status 'missing'. None: every chunk the manifest lists.
        crs: The CRS of a shapely geometry or bbox `aoi`.

    Returns:
        A GeoDataFrame in the cube's CRS (EPSG:3413 or EPSG:4326), one row per chunk, ordered by chunk id, with
        columns chunk_id, status ('full', 'partial', or 'missing' with an aoi), items (source items merged),
        items_failed, coverage (fraction of the chunk the items cover), checked_at (UTC), snapshot_id, note and
        geometry (the chunk's footprint). Empty when the cube does not exist yet.

    Raises:
        InvalidRequestError: Unknown cube name, a bad aoi, or a data_dir holding something else.

    Example:
        >>> frame = coverage("/data/darts-aux", "arcticdem-32m")  # doctest: +SKIP
        >>> frame.plot(column="status", legend=True)  # doctest: +SKIP
    """
    from .cube_coverage import coverage_frame, product_named

    settings = _settings()
    return coverage_frame(resolve_data_dir(data_dir, settings), product_named(product, settings.tcvis_edition),
                          aoi, crs)


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


@contextmanager
def _disk_full_typed(what: str) -> Iterator[None]:
    """A full disk under staging or the store surfaces as a bare OSError: raise it as DiskFullError naming `what`."""
    try:
        yield
    except DartsAuxError:
        raise
    except Exception as error:
        full = disk_full_error(error, what)
        if full is None:
            raise
        raise full from error


def fill(data_dir: DataLocation, product: Product, window: PixelWindow, settings: Settings) -> FillReport:
    """Fill the chunks of a window: through the product's Prefect flow, or inline when no Prefect API is set."""
    check_writable(data_dir, product)  # before the first request: an unwritable data_dir fails at once
    started = time.perf_counter()
    with _disk_full_typed(f"the {product.key} fill in {data_dir}"):
        report = _run_fill(data_dir, product, window, settings)
    log.info("filled %s window %s in %.1f s", product.key, window, time.perf_counter() - started)
    return report


def _run_fill(data_dir: DataLocation, product: Product, window: PixelWindow, settings: Settings) -> FillReport:
    """Run the fill through the product's Prefect flow, or inline."""
    from .fill import FillContext, run_inline

    if use_prefect(settings):
        from .orchestrator import as_unavailable, check_prefect_api, prefect_api_url

        api_url = prefect_api_url()
        check_prefect_api(api_url)  # one quick request: an API that does not answer fails here, in one line
        try:
            return _flow_runner(product)(product, window, data_dir, settings)
        except Exception as error:
            unavailable = as_unavailable(error, api_url)
            if unavailable is None:
                raise
            raise unavailable from error
    from .plan import log_fill_plan

    log_fill_plan(data_dir, product, window, settings.revisit_days * 86400)
    return run_inline(FillContext(product, data_dir, settings), window)


def _flow_runner(product: Product) -> Callable[[Product, PixelWindow, DataLocation, Settings], FillReport]:
    """The Prefect flow that fills a window of the product: its family's own flow, else `download_chunks`."""
    if product.family == "tcvis":
        from .flows.tcvis import run_fill_tcvis

        return run_fill_tcvis
    if product.family == "arcticdem":
        from .flows.arcticdem import run_fill_arcticdem

        return run_fill_arcticdem
    return _run_download_flow


def _run_download_flow(product: Product, window: PixelWindow, data_dir: DataLocation, settings: Settings
                       ) -> FillReport:
    """The generic `download_chunks` flow over one window (it finds the product again by its key)."""
    from .flows.download import run_download_chunks

    return run_download_chunks(product, [window], data_dir, settings)


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
    arrays = decoded(product, cube.read(window) if persist else lazy_window(cube, window))
    geobox = window_geobox(product.extent, window)
    coords = geobox_coords(geobox)

    dims = geobox.dimensions  # ("y", "x"), or ("latitude", "longitude") on a lon/lat grid
    variables = {name: _variable(dims, data, {"grid_mapping": CRS_COORD}) for name, data in arrays.items()}
    attrs = {"product": product.key, "source_collection": product.collection}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def decoded(product: Product, arrays: dict[str, Any]) -> dict[str, Any]:
    """The arrays as a load returns them: a quantised variable's stored codes as float32 values (NaN = masked).

    Numpy arrays are decoded here; dask arrays block by block when computed.
    """
    out = dict(arrays)
    for variable in product.variables:
        quantisation = variable.quantisation
        if quantisation is None:
            continue
        data = arrays[variable.name]
        if isinstance(data, np.ndarray):
            out[variable.name] = quantisation.decode(data)
        else:
            out[variable.name] = data.map_blocks(quantisation.decode, dtype=np.float32)
    return out


def _variable(dims: tuple[str, ...], data: Any, attrs: dict[str, Any]) -> xr.Variable:
    """An xarray Variable over a numpy or dask array as it is.

    xarray's conversion of plain data would leave such an array unchanged, but first imports dask.array to test for
    one (~0.1 s in a fresh process); `fastpath` skips that test (tests/unit/test_fast_path_imports.py).
    """
    import xarray as xr

    return xr.Variable(dims, data, attrs, fastpath=True)


CRS_COORD = "spatial_ref"
"""Name of the scalar coordinate holding the CRS (CF grid mapping), as odc-geo names it."""


def geobox_coords(geobox: GeoBox) -> dict[Hashable, xr.DataArray]:
    """odc.geo.xr.xr_coords(geobox, crs_coord_name="spatial_ref") for the cube's axis-aligned window geoboxes.

    Built here because odc.geo.xr imports rasterio (and boto3), a tenth of a second a fresh process need not
    spend; tests/unit/test_fast_path_imports.py checks the result equals odc-geo's. Also makes `.odc` work on
    the result (`_install_odc_accessors`).
    """
    import numpy as np
    import xarray as xr

    _install_odc_accessors(xr)
    crs = geobox.crs
    if not geobox.axis_aligned or crs is None:  # never for a cube window; odc-geo's own coordinates then
        from odc.geo.xr import xr_coords as odc_xr_coords

        return odc_xr_coords(geobox, crs_coord_name=CRS_COORD)
    attrs = {"crs": str(crs)}
    coords: dict[Hashable, xr.DataArray] = {}
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
