"""The `fill_arcticdem` flow: discover → one download task per chunk (retried) → commit tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from darts_aux.fill import FillReport, arcticdem_context
from darts_aux.grid import PixelWindow, window_bounds
from darts_aux.products import Product, arcticdem
from darts_aux.settings import Settings, get_settings

from .roi import Bounds, fill_window_of, window_size_label
from .runners import fill_task_runner
from .tasks import fill_window


def _flow_run_name() -> str:
    """'arcticdem-32m 30×25 km': product, resolution and ROI size, readable in the UI."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    resolution = params["resolution"]
    bounds, crs, geometry = params.get("bounds"), params.get("crs"), params.get("geometry")
    if geometry is None and crs is None and bounds is not None:
        left, bottom, right, top = bounds
        return f"arcticdem-{resolution}m {(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"
    try:
        product = arcticdem(resolution)
        size = window_size_label(product, fill_window_of(product, bounds, crs, geometry, params.get("buffer", 0)))
    except Exception:  # noqa: BLE001 - a bad ROI fails in the flow with its own message; the name stays plain
        size = "ROI"
    return f"arcticdem-{resolution}m {size}"


@flow(name="fill_arcticdem", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def fill_arcticdem(resolution: int, bounds: tuple[float, float, float, float] | None = None,
                   data_dir: str | None = None, crs: str | None = None,
                   geometry: dict[str, Any] | str | None = None, buffer: int = 0) -> FillReport:
    """Fill every chunk of an ArcticDEM cube (2, 10 or 32 m) touching a region.

    The region is `bounds` (left, bottom, right, top) in `crs` (default EPSG:3413), or a GeoJSON `geometry`
    (geometry, Feature or FeatureCollection; in `crs`, default EPSG:4326), padded by `buffer` cube pixels.
    """
    settings = get_settings()
    ctx = arcticdem_context(resolution, data_dir or settings.data_dir, settings)
    return fill_window(ctx, fill_window_of(ctx.product, _bounds(bounds), crs, geometry, buffer))


def _bounds(bounds: Bounds | list[float] | None) -> Bounds | None:
    return None if bounds is None else tuple(bounds)  # type: ignore[return-value]


def run_fill_arcticdem(product: Product, window: PixelWindow, data_dir: Path, settings: Settings) -> FillReport:
    """Run the flow for a cube window on the configured task runner (threads or Dask)."""
    bounds = window_bounds(product.extent, window)
    runner = fill_task_runner(settings)
    return fill_arcticdem.with_options(task_runner=runner)(int(product.resolution), bounds, str(data_dir))
