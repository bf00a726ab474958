"""The `fill_tcvis` flow: discover → one download task per chunk (Earth Engine, retried) → commit tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import flow
from prefect.states import State

from darts_aux.fill import FillReport, tcvis_context
from darts_aux.grid import PixelWindow, window_bounds
from darts_aux.location import DataLocation
from darts_aux.products import Product, tcvis
from darts_aux.settings import Settings, get_settings

from .failures import USER_ERRORS, failed, fill_report
from .roi import Bounds, Buffer, Geometry, fill_window_of, run_name
from .runners import fill_task_runner, run_named
from .tasks import fill_window


def name_for(params: Mapping[str, Any]) -> str:
    """'tcvis-2000-2019 1.00×0.50°': the cube (edition) and the size of the window a run with `params` fills."""
    return run_name(lambda: tcvis(params.get("edition") or get_settings().tcvis_edition), params)


def _flow_run_name() -> str:
    """The run's name from its parameters (Prefect's flow_run_name hook)."""
    from prefect.runtime import flow_run

    return name_for(flow_run.parameters)


@flow(name="fill_tcvis", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def fill_tcvis(bounds: Bounds | None = None, edition: str | None = None, data_dir: str | None = None,
               crs: str | None = None, geometry: Geometry | None = None, buffer: Buffer = 0) -> FillReport | State:
    """Fill every TCVIS chunk touching a region.

    The region is `bounds` (left, bottom, right, top) in `crs` (default EPSG:4326; lon/lat bounds may pass
    180° to cross the antimeridian), or a GeoJSON `geometry` (in `crs`, default EPSG:4326), padded by `buffer`
    cube pixels. `edition` defaults to DARTS_AUX_TCVIS_EDITION. A mistake in them ends the run Failed with a
    message saying what to change.
    """
    try:
        settings = get_settings()
        edition = edition or settings.tcvis_edition
        window = fill_window_of(tcvis(edition), bounds, crs, geometry, buffer)
        return fill_window(tcvis_context(edition, data_dir or settings.data_dir, settings), window)
    except USER_ERRORS as error:
        return failed(error)


def run_fill_tcvis(product: Product, window: PixelWindow, data_dir: DataLocation, settings: Settings) -> FillReport:
    """Run the flow for a cube window on the configured task runner (threads or Dask); raises what the run raised."""
    bounds = window_bounds(product.extent, window)
    runner = fill_task_runner(settings)
    params = {"bounds": bounds, "edition": product.collection, "data_dir": str(data_dir)}
    return fill_report(run_named(fill_tcvis.with_options(task_runner=runner), params, name_for(params)))
