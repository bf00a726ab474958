"""The `fill_tcvis` flow: discover → one download task per chunk (Earth Engine, retried) → commit tasks."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from darts_aux.fill import FillReport, tcvis_context
from darts_aux.grid import PixelWindow, bounds_window, window_bounds
from darts_aux.products import Product
from darts_aux.settings import Settings, get_settings

from .tasks import fill_window, thread_runner


def _flow_run_name() -> str:
    """'tcvis-2000-2019 1.0×0.5°': product and ROI size, readable in the UI."""
    from prefect.runtime import flow_run

    from darts_aux.products import tcvis

    params = flow_run.parameters
    left, bottom, right, top = params["bounds"]
    edition = params.get("edition") or get_settings().tcvis_edition
    return f"{tcvis(edition).key} {right - left:.2f}×{top - bottom:.2f}°"


@flow(name="fill_tcvis", flow_run_name=_flow_run_name, task_runner=thread_runner(4))
def fill_tcvis(bounds: tuple[float, float, float, float], edition: str | None = None,
               data_dir: str | None = None) -> FillReport:
    """Fill every TCVIS chunk touching `bounds` (lon/lat; `right` may pass 180° to cross the antimeridian)."""
    settings = get_settings()
    ctx = tcvis_context(edition or settings.tcvis_edition, data_dir or settings.data_dir, settings)
    return fill_window(ctx, bounds_window(ctx.product.extent, tuple(bounds)))


def run_fill_tcvis(product: Product, window: PixelWindow, data_dir: Path, settings: Settings) -> FillReport:
    """Run the flow for a cube window with the configured number of download workers."""
    bounds = window_bounds(product.extent, window)
    runner = thread_runner(settings.download_workers)
    return fill_tcvis.with_options(task_runner=runner)(bounds, product.collection, str(data_dir))
