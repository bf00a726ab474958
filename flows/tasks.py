"""The fill tasks shared by every product's flow: discover, download (one per chunk), commit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

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
from darts_aux.grid import ChunkId, PixelWindow
from darts_aux.manifest import ChunkRecord

from .policy import retry_options
from .runners import thread_runner  # noqa: F401 - kept importable from here


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


def product_tags(product: str) -> list[str]:
    """Tags of every task of a product's fill: the source family ('arcticdem', 'tcvis') and the cube key."""
    return [product.split("-")[0], product]


def download_tags(product: str) -> list[str]:
    """Tags of a download task: the product's, plus 'download' and 'download-<family>' for concurrency limits.

    `prefect concurrency-limit create download 4` caps downloads of every source together;
    `prefect concurrency-limit create download-arcticdem 4` (or `download-tcvis`) caps one source only.
    A limit on 'arcticdem' or 'tcvis' would also hold back the discover and commit tasks.
    """
    family = product.split("-")[0]
    return [*product_tags(product), "download", f"download-{family}"]


@dataclass(frozen=True)
class ChunkRun:
    """What one fill did to one chunk, for the chunk table artifact."""

    chunk: ChunkId
    action: str
    """'fetched' (downloaded and committed), 'rechecked' (partial, nothing new), 'reused' (full) or 'failed'."""
    record: ChunkRecord | None
    """The chunk's manifest row after the fill (None when never recorded)."""
    new_items: tuple[str, ...] = ()
    bytes_read: int = 0
    seconds: float = 0.0
    error: str = ""
    region: str = ""


@dataclass
class FillOutcome:
    """A fill of one product over one or more windows: the report, every chunk's fate, the errors raised."""

    ctx: FillContext
    report: FillReport
    windows: list[tuple[str, PixelWindow]] = field(default_factory=list)
    chunks: list[ChunkRun] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def raise_first_error(self) -> None:
        """Raise the first chunk error, as a failed task would (the other chunks were still committed)."""
        if self.errors:
            raise self.errors[0]


def fill_window(ctx: FillContext, window: PixelWindow) -> FillReport:
    """The body of every fill flow: discover, then a retried download and a commit task per chunk.

    Publishes the chunk table and summary artifacts of the run, then raises the first chunk error, if any.
    """
    from .artifacts import publish_fill_artifacts

    outcome = fill_windows(ctx, [("", window)])
    publish_fill_artifacts(outcome)
    outcome.raise_first_error()
    return outcome.report


def fill_windows(ctx: FillContext, windows: Sequence[tuple[str, PixelWindow]]) -> FillOutcome:
    """Fill several (labelled) windows of one product one after another; errors are collected, not raised."""
    started = time.perf_counter()
    outcome = FillOutcome(ctx, new_report(ctx), list(windows))
    for label, window in windows:
        part, chunks, errors = _fill_one(ctx, window, label)
        _add_report(outcome.report, part)
        outcome.chunks.extend(chunks)
        outcome.errors.extend(errors)
    outcome.report.seconds = time.perf_counter() - started
    return outcome


def _fill_one(ctx: FillContext, window: PixelWindow, label: str
              ) -> tuple[FillReport, list[ChunkRun], list[BaseException]]:
    started = time.perf_counter()
    product = ctx.product.key
    tags = product_tags(product)
    discovery = discover_task.with_options(task_run_name=f"discover-{product}", tags=tags)(ctx, window)
    options = retry_options(ctx.policy)
    staged = [
        download_task.with_options(task_run_name=f"download-{job.chunk}", tags=download_tags(product), **options)
        .submit(ctx, job)
        for job in discovery.jobs
    ]
    commits = [
        commit_task.with_options(task_run_name=f"commit-{job.chunk}", tags=[*tags, "commit"], **options)
        .submit(ctx, future)
        for job, future in zip(discovery.jobs, staged)
    ]
    report = new_report(ctx)
    chunks, errors = _collect(report, discovery.jobs, staged, commits, label)
    finish_report(ctx, report, discovery, started)
    chunks.extend(_settled_chunks(ctx, window, discovery, label))
    return report, chunks, errors


def _collect(report: FillReport, jobs: Sequence[ChunkJob], staged: list[PrefectFuture[Any]],
             commits: list[PrefectFuture[Any]], label: str) -> tuple[list[ChunkRun], list[BaseException]]:
    """Wait for every chunk; account the committed ones, return every chunk's run and the errors of the others."""
    errors: list[BaseException] = []
    chunks: list[ChunkRun] = []
    for job, staged_future, commit_future in zip(jobs, staged, commits):
        try:
            record = commit_future.result()
            staged_chunk = staged_future.result()
            add_to_report(report, staged_chunk, record)
            chunks.append(ChunkRun(job.chunk, "fetched", record, staged_chunk.applied, staged_chunk.bytes_read,
                                   staged_chunk.seconds, region=label))
        except Exception as error:  # noqa: BLE001 - one chunk failed; the others still count, raise at the end
            errors.append(error)
            chunks.append(ChunkRun(job.chunk, "failed", None, error=f"{type(error).__name__}: {error}", region=label))
    return chunks, errors


def _settled_chunks(ctx: FillContext, window: PixelWindow, discovery: Discovery, label: str) -> list[ChunkRun]:
    """Rows for the chunks the fill did not download: full ones reused, partial ones searched again."""
    if not discovery.reused and not discovery.rechecked:
        return []
    latest = ctx.manifest().latest(window)
    return [ChunkRun(chunk, action, latest.get(chunk), region=label)
            for action, chunks in (("reused", discovery.reused), ("rechecked", discovery.rechecked))
            for chunk in chunks]


def _add_report(total: FillReport, part: FillReport) -> None:
    """Add one window's report to the product's running total."""
    total.chunks_total += part.chunks_total
    total.chunks_reused += part.chunks_reused
    total.chunks_fetched += part.chunks_fetched
    total.chunks_rechecked += part.chunks_rechecked
    total.bytes_read += part.bytes_read
    total.records.extend(part.records)
    total.failures.extend(part.failures)

