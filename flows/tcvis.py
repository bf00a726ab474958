"""The `fill_tcvis` flow: discover → one download task per chunk (Earth Engine, retried) → commit tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from darts_aux.fill import FillReport, tcvis_context
from darts_aux.grid import PixelWindow, window_bounds
from darts_aux.products import Product
from darts_aux.settings import Settings, get_settings

from .roi import fill_window_of, window_size_label
from .runners import fill_task_runner
from .tasks import fill_window


def _flow_run_name() -> str:
    """'tcvis-2000-2019 1.00×0.50°': product and ROI size, readable in the UI."""
    from prefect.runtime import flow_run

    from darts_aux.products import tcvis

    params = flow_run.parameters
    edition = params.get("edition") or get_settings().tcvis_edition
    product = tcvis(edition)
    bounds, crs, geometry = params.get("bounds"), params.get("crs"), params.get("geometry")
    if geometry is None and crs is None and bounds is not None:
        left, bottom, right, top = bounds
        return f"{product.key} {right - left:.2f}×{top - bottom:.2f}°"
    try:
        size = window_size_label(product, fill_window_of(product, bounds, crs, geometry, params.get("buffer", 0)))
    except Exception:  # noqa: BLE001 - a bad ROI fails in the flow with its own message; the name stays plain
        size = "ROI"
    return f"{product.key} {size}"


@flow(name="fill_tcvis", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def fill_tcvis(bounds: tuple[float, float, float, float] | None = None, edition: str | None = None,
               data_dir: str | None = None, crs: str | None = None,
               geometry: dict[str, Any] | str | None = None, buffer: int = 0) -> FillReport:
    """Fill every TCVIS chunk touching a region.

    The region is `bounds` (left, bottom, right, top) in `crs` (default EPSG:4326; lon/lat bounds may pass
    180° to cross the antimeridian), or a GeoJSON `geometry` (in `crs`, default EPSG:4326), padded by `buffer`
    cube pixels. `edition` defaults to DARTS_AUX_TCVIS_EDITION.
    """
    settings = get_settings()
    ctx = tcvis_context(edition or settings.tcvis_edition, data_dir or settings.data_dir, settings)
    return fill_window(ctx, fill_window_of(ctx.product, None if bounds is None else tuple(bounds), crs, geometry,
                                           buffer))


def run_fill_tcvis(product: Product, window: PixelWindow, data_dir: Path, settings: Settings) -> FillReport:
    """Run the flow for a cube window on the configured task runner (threads or Dask)."""
    bounds = window_bounds(product.extent, window)
    runner = fill_task_runner(settings)
    return fill_tcvis.with_options(task_runner=runner)(bounds, product.collection, str(data_dir))
