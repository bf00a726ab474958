"""The fill tasks shared by every product's flow: discover, download (one per chunk), commit."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from darts_aux.fill import (
    ChunkJob,
    Discovery,
    FillContext,
    FillReport,
    StagedChunk,
    add_to_report,
    commit,
    discover,
    download,
    finish_report,
    new_report,
)
from darts_aux.grid import PixelWindow
from darts_aux.manifest import ChunkRecord

from .policy import retry_options


@task(name="discover", cache_policy=NO_CACHE)
def discover_task(ctx: FillContext, window: PixelWindow) -> Discovery:
    """Chunks of the ROI not full in the manifest, with the items each still needs (one search)."""
    return discover(ctx, window)


@task(name="download", cache_policy=NO_CACHE)
def download_task(ctx: FillContext, job: ChunkJob) -> StagedChunk:
    """Read the chunk's pixels from its new items and stage them on disk."""
    return download(ctx, job)


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(ctx: FillContext, staged: StagedChunk) -> ChunkRecord:
    """Merge the staged chunk into the cube and record it in the manifest."""
    return commit(ctx, staged)


def fill_window(ctx: FillContext, window: PixelWindow) -> FillReport:
    """The body of every fill flow: discover, then a retried download and a commit task per chunk."""
    started = time.perf_counter()
    product = ctx.product.key
    tags = [product.split("-")[0], product]
    discovery = discover_task.with_options(task_run_name=f"discover-{product}", tags=tags)(ctx, window)
    options = retry_options(ctx.policy)
    staged = [
        download_task.with_options(task_run_name=f"download-{job.chunk}", tags=[*tags, "download"], **options)
        .submit(ctx, job)
        for job in discovery.jobs
    ]
    commits = [
        commit_task.with_options(task_run_name=f"commit-{job.chunk}", tags=[*tags, "commit"], **options)
        .submit(ctx, future)
        for job, future in zip(discovery.jobs, staged)
    ]
    report = new_report(ctx)
    errors = _collect(report, staged, commits)
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
        except Exception as error:  # noqa: BLE001 - one chunk failed; the others still count, raise at the end
            errors.append(error)
    return errors


def thread_runner(workers: int) -> ThreadPoolTaskRunner:
    """The default task runner: a thread pool (downloads are I/O-bound and release the GIL)."""
    return ThreadPoolTaskRunner(max_workers=workers)
