"""The `download_chunks` flow: fill the chunks an area of interest needs, given as cube windows (download_*)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import flow

from darts_aux.fill import FillContext, FillReport
from darts_aux.grid import PixelWindow
from darts_aux.location import DataLocation, as_location
from darts_aux.products import Product
from darts_aux.settings import Settings, get_settings
from darts_aux.wording import plural

from .artifacts import publish_fill_artifacts
from .runners import fill_task_runner, run_named
from .tasks import fill_windows

Window = tuple[int, int, int, int]
"""(row0, row1, col0, col1) of a cube window: a flow parameter that serialises."""


def name_for(params: Mapping[str, Any]) -> str:
    """'download arcticdem-32m: 7 chunks in 5 windows'."""
    windows = params.get("windows") or []
    chunks = plural(params.get("chunks", 0), "chunk")
    return f"download {params['product']}: {chunks} in {plural(len(windows), 'window')}"


def _flow_run_name() -> str:
    """The run's name from its parameters (Prefect's flow_run_name hook)."""
    from prefect.runtime import flow_run

    return name_for(flow_run.parameters)


@flow(name="download_chunks", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def download_chunks(product: str, windows: list[Window], data_dir: str, chunks: int = 0) -> FillReport:
    """Fill every chunk of the given windows of a cube (`product` is its key, e.g. 'arcticdem-32m').

    The windows hold only the chunks an area of interest needs (darts_aux.aoi); `chunks` is their count, for the
    run's name. Publishes the chunk table and summary artifacts, then raises the first chunk error, if any.
    """
    from darts_aux.cube_coverage import product_named

    settings = get_settings()
    ctx = FillContext(product_named(product, settings.tcvis_edition), as_location(data_dir), settings)
    labelled = [(f"window {i + 1}", PixelWindow(*w)) for i, w in enumerate(windows)]
    outcome = fill_windows(ctx, labelled)
    publish_fill_artifacts(outcome)
    outcome.raise_first_error()
    return outcome.report


def run_download_chunks(product: Product, windows: list[PixelWindow], data_dir: DataLocation,
                        settings: Settings) -> FillReport:
    """Run the flow over windows of a cube on the configured task runner (threads or Dask)."""
    from darts_aux.grid import ChunkGrid

    grid = ChunkGrid(product)
    count = sum(len(grid.chunks(w)) for w in windows)
    plain = [(w.row0, w.row1, w.col0, w.col1) for w in windows]
    runner = fill_task_runner(settings)
    params = {"product": product.key, "windows": plain, "data_dir": str(data_dir), "chunks": count}
    return run_named(download_chunks.with_options(task_runner=runner), params, name_for(params))

