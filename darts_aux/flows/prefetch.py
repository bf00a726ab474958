"""The `prefetch_regions` flow: fill every cube for the regions listed in a GeoJSON or GeoParquet file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.states import State

from darts_aux.errors import DartsAuxError, DataDirError, EmptyRegionError
from darts_aux.fill import FillContext, FillReport
from darts_aux.products import Product, alphaearth, arcticdem
from darts_aux.products import tcvis as tcvis_product
from darts_aux.settings import Settings, get_settings
from darts_aux.wording import plural

from .alphaearth import Year
from .artifacts import publish_fill_artifacts
from .cubes import resolve_data_dir
from .failures import USER_ERRORS, failed
from .roi import Buffer, Resolution, geometry_window
from .runners import fill_task_runner
from .tasks import FillOutcome, fill_windows

if TYPE_CHECKING:
    from odc.geo.geom import Geometry

DEFAULT_REGIONS_FILE = "regions.geojson"
NAME_COLUMNS = ("name", "id", "region")


def _flow_run_name() -> str:
    """'prefetch regions.geojson: arcticdem-10m arcticdem-32m tcvis'."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    regions = params.get("regions") or DEFAULT_REGIONS_FILE
    cubes = [f"arcticdem-{r}m" for r in params.get("arcticdem_resolutions") or ()]
    if params.get("tcvis", True):
        cubes.append("tcvis")
    cubes += [f"alphaearth-10m@{year}" for year in params.get("alphaearth_years") or ()]
    return f"prefetch {Path(regions).name}: {' '.join(cubes) or 'nothing'}"


@flow(name="prefetch_regions", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def prefetch_regions(regions: str | None = None, arcticdem_resolutions: tuple[Resolution, ...] = (2, 10, 32),
                     tcvis: bool = True, tcvis_edition: str | None = None, buffer: Buffer = 0,
                     data_dir: str | None = None, alphaearth_years: tuple[Year, ...] = ()
                     ) -> dict[str, FillReport] | State:
    """Fill the chosen cubes over every region of a GeoJSON / GeoParquet file, so later loads start no download.

    `regions` is the file (any CRS the file declares; GeoJSON is EPSG:4326); default `<data_dir>/regions.geojson`,
    and without that file there is nothing to prefetch (the run completes and says so). A column `name` (or `id`,
    `region`) labels the regions in logs and artifacts. Each region is padded by `buffer` cube pixels.
    `tcvis_edition` defaults to DARTS_AUX_TCVIS_EDITION. `alphaearth_years` adds the AlphaEarth cube of each year
    (none by default: 64 bands are 16× ArcticDEM 10 m's bytes). Returns a report per cube (a year's cube is
    `alphaearth-10m@2024`); raises the first error after every cube was tried.
    """
    logger = get_run_logger()
    try:
        settings = get_settings()
        directory = resolve_data_dir(data_dir)
        path = Path(regions).expanduser() if regions else directory / DEFAULT_REGIONS_FILE
        if regions is None and not path.exists():
            logger.info("nothing to prefetch: no regions file at %s", path)
            return {}
        labelled = read_regions(path)
        logger.info("%s from %s", plural(len(labelled), "region"), path)
        products = [arcticdem(r) for r in arcticdem_resolutions]
        if tcvis:
            products.append(tcvis_product(tcvis_edition or settings.tcvis_edition))
        products += [alphaearth().at(year) for year in alphaearth_years]
        return _prefetch(products, labelled, directory, settings, buffer)
    except USER_ERRORS as error:
        return failed(error)


def _prefetch(products: list[Product], labelled: list[tuple[str, Geometry]], directory: Path, settings: Settings,
              buffer: int) -> dict[str, FillReport]:
    """Fill each cube over every region; a region outside one cube is logged and the rest still fill."""
    logger = get_run_logger()
    outcomes: list[FillOutcome] = []
    errors: list[BaseException] = []
    for product in products:
        windows = []
        for label, region in labelled:
            try:
                windows.append((label, geometry_window(product, region, buffer)))
            except DartsAuxError as error:  # e.g. a region outside this cube: the other regions and cubes still fill
                logger.error("%s, region %s: %s", product.key, label, error)
                errors.append(error)
        if not windows:
            continue
        outcome = fill_windows(FillContext(product, directory, settings), windows)
        publish_fill_artifacts(outcome)
        outcomes.append(outcome)
        errors.extend(outcome.errors)
    if errors:
        raise errors[0]
    return {outcome.ctx.product.key: outcome.report for outcome in outcomes}


def read_regions(path: Path) -> list[tuple[str, Geometry]]:
    """The regions of a GeoJSON or GeoParquet file as (label, odc-geo Geometry), in file order."""
    import geopandas as gpd
    from odc.geo import geom

    if not path.exists():
        raise DataDirError(f"regions file {path} does not exist; pass `regions` (a GeoJSON or GeoParquet file) or "
                           f"put {DEFAULT_REGIONS_FILE} into the data directory.")
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        frame = gpd.read_parquet(path)
    else:
        frame = gpd.read_file(path)
    if frame.crs is None:
        raise EmptyRegionError(f"regions file {path} declares no CRS; write it with one (GeoJSON is EPSG:4326).")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise EmptyRegionError(f"regions file {path} holds no region geometry.")
    column = next((c for c in NAME_COLUMNS if c in frame.columns), None)
    return [(str(row[column]) if column else f"#{i}", geom.Geometry(row.geometry, frame.crs))
            for i, (_, row) in enumerate(frame.iterrows())]

