"""The `fill_arcticdem` flow: discover → one download task per chunk (retried) → commit tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from darts_aux.errors import DartsAuxError
from darts_aux.fill import (
    ChunkJob,
    Discovery,
    FillContext,
    FillReport,
    StagedChunk,
    add_to_report,
    arcticdem_context,
    commit,
    discover,
    download,
    finish_report,
)
from darts_aux.grid import PixelWindow, window_bounds, window_from_bounds
from darts_aux.manifest import ChunkRecord
from darts_aux.products import Product
from darts_aux.settings import Settings, get_settings

from .policy import retry_options


@task(name="discover-arcticdem", cache_policy=NO_CACHE, tags=["arcticdem"])
def discover_task(ctx: FillContext, window: PixelWindow) -> Discovery:
    """Chunks of the ROI not full in the manifest, with the items each still needs (one search)."""
    return discover(ctx, window)


@task(name="download-arcticdem", cache_policy=NO_CACHE, tags=["arcticdem", "download"])
def download_task(ctx: FillContext, job: ChunkJob) -> StagedChunk:
    """Read the chunk's window of its new items (range requests) and stage the mosaic."""
    return download(ctx, job)


@task(name="commit-arcticdem", cache_policy=NO_CACHE, tags=["arcticdem", "commit"])
def commit_task(ctx: FillContext, staged: StagedChunk) -> ChunkRecord:
    """Merge the staged chunk into the cube and record it in the manifest."""
    return commit(ctx, staged)


def _flow_run_name() -> str:
    """'arcticdem-32m 30×25 km': product, resolution and ROI size, readable in the UI."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    left, bottom, right, top = params["bounds"]
    return f"arcticdem-{params['resolution']}m {(right - left) / 1000:.0f}×{(top - bottom) / 1000:.0f} km"


@flow(name="fill_arcticdem", flow_run_name=_flow_run_name, task_runner=ThreadPoolTaskRunner(max_workers=4))
def fill_arcticdem(
    resolution: int,
    bounds: tuple[float, float, float, float],
    data_dir: str | None = None,
) -> FillReport:
    """Fill every chunk of an ArcticDEM cube touching `bounds` (EPSG:3413 left, bottom, right, top)."""
    started = time.perf_counter()
    settings = get_settings()
    ctx = arcticdem_context(resolution, data_dir or settings.data_dir, settings)
    window = window_from_bounds(ctx.product.extent, tuple(bounds)).clip(ctx.product.extent.shape)
    discovery = discover_task.with_options(task_run_name=f"discover-{ctx.product.key}")(ctx, window)
    options = retry_options(ctx.policy)
    staged_futures = [
        download_task.with_options(task_run_name=f"download-{job.chunk}", **options).submit(ctx, job)
        for job in discovery.jobs
    ]
    commit_futures = [
        commit_task.with_options(task_run_name=f"commit-{job.chunk}", **options).submit(ctx, staged)
        for job, staged in zip(discovery.jobs, staged_futures)
    ]
    report = FillReport(ctx.product.key)
    errors = _collect(report, staged_futures, commit_futures)
    finish_report(ctx, report, discovery, started)
    if errors:
        raise errors[0]
    return report


def _collect(report: FillReport, staged: list[PrefectFuture[Any]], commits: list[PrefectFuture[Any]]) -> list[BaseException]:
    """Wait for every chunk; account the committed ones, return the errors of the others."""
    errors: list[BaseException] = []
    for staged_future, commit_future in zip(staged, commits):
        try:
            record = commit_future.result()
            add_to_report(report, staged_future.result(), record)
        except DartsAuxError as error:
            errors.append(error)
        except Exception as error:  # noqa: BLE001 - an upstream task failed; keep going, raise at the end
            errors.append(error)
    return errors


def run_fill_arcticdem(product: Product, window: PixelWindow, data_dir: Path, settings: Settings) -> FillReport:
    """Run the flow for a cube window with the configured number of download workers."""
    runner = ThreadPoolTaskRunner(max_workers=settings.download_workers)
    bounds = window_bounds(product.extent, window)
    return fill_arcticdem.with_options(task_runner=runner)(int(product.resolution), bounds, str(data_dir))
