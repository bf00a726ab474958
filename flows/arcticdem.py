"""The `fill_arcticdem` flow: discover → one download task per chunk (retried) → commit tasks."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from darts_aux.fill import FillReport, arcticdem_context
from darts_aux.grid import PixelWindow, bounds_window, window_bounds
from darts_aux.products import Product
from darts_aux.settings import Settings, get_settings

from .tasks import fill_window, thread_runner


def _flow_run_name() -> str:
    """'arcticdem-32m 30×25 km': product, resolution and ROI size, readable in the UI."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    left, bottom, right, top = params["bounds"]
    return f"arcticdem-{params['resolution']}m {(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"


@flow(name="fill_arcticdem", flow_run_name=_flow_run_name, task_runner=thread_runner(4))
def fill_arcticdem(resolution: int, bounds: tuple[float, float, float, float], data_dir: str | None = None) -> FillReport:
    """Fill every chunk of an ArcticDEM cube touching `bounds` (EPSG:3413 left, bottom, right, top)."""
    settings = get_settings()
    ctx = arcticdem_context(resolution, data_dir or settings.data_dir, settings)
    return fill_window(ctx, bounds_window(ctx.product.extent, tuple(bounds)))


def run_fill_arcticdem(product: Product, window: PixelWindow, data_dir: Path, settings: Settings) -> FillReport:
    """Run the flow for a cube window with the configured number of download workers."""
    bounds = window_bounds(product.extent, window)
    runner = thread_runner(settings.download_workers)
    return fill_arcticdem.with_options(task_runner=runner)(int(product.resolution), bounds, str(data_dir))
