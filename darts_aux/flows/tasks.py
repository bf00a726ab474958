"""The fill tasks shared by every product's flow: discover, then download and commit tasks over batches of chunks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed

from darts_aux.fill import (
    ChunkJob,
    ChunkOutcome,
    Discovery,
    FillContext,
    FillReport,
    add_to_report,
    commit_batch,
    discover,
    download_batch,
    finish_report,
    new_report,
)
from darts_aux.freed_memory import release_freed_memory
from darts_aux.grid import ChunkId, PixelWindow, span_label
from darts_aux.manifest import ChunkRecord
from darts_aux.pipeline import run_bounded
from darts_aux.plan import log_fill_plan
from darts_aux.settings import Settings
from darts_aux.sharing import fill_claims, run_shared

from .logs import forward_library_logs
from .policy import retry_options
from .runners import task_slots, thread_runner  # noqa: F401 - thread_runner kept importable from here

log = logging.getLogger(__name__)
MAX_CHUNKS_PER_TASK = 16
TASKS_PER_SLOT = 4
"""Automatic batching aims at this many download tasks per concurrent slot, so the slots stay evenly busy."""


@task(name="discover", cache_policy=NO_CACHE)
def discover_task(ctx: FillContext, window: PixelWindow) -> Discovery:
    """Chunks of the ROI not full in the manifest, with the items each still needs (one search)."""
    return discover(ctx, window)


@task(name="download", cache_policy=NO_CACHE)
def download_task(ctx: FillContext, jobs: tuple[ChunkJob, ...]) -> tuple[ChunkOutcome, ...]:
    """Read a batch of chunks from their new items and stage each on disk (each chunk retried on its own)."""
    forward_library_logs()  # a Dask worker process too
    return download_batch(ctx, jobs)


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(ctx: FillContext, downloads: tuple[ChunkOutcome, ...]) -> tuple[ChunkOutcome, ...]:
    """Merge a batch's staged chunks into the cube and record each in the manifest."""
    forward_library_logs()
    return commit_batch(ctx, downloads)


def chunks_per_task(settings: Settings, jobs: int) -> int:
    """How many chunks one download/commit task takes: the setting, or automatic (0).

    Automatic: one chunk per task for small fills (every chunk its own task run in the UI); for large ones
    enough chunks per task that Prefect's fixed cost per task run stays small beside the chunk work.
    """
    if settings.chunks_per_task:
        return settings.chunks_per_task
    return max(1, min(MAX_CHUNKS_PER_TASK, math.ceil(jobs / (TASKS_PER_SLOT * task_slots(settings)))))


def batches(jobs: Sequence[ChunkJob], size: int) -> list[tuple[ChunkJob, ...]]:
    """The jobs cut into consecutive batches of `size` (neighbouring chunks go together)."""
    return [tuple(jobs[i:i + size]) for i in range(0, len(jobs), size)]


def batch_label(batch: Sequence[ChunkJob]) -> str:
    """'r3c4' for one chunk, 'r3c4+12' for a batch of 13 starting at r3c4: the task-run name's suffix."""
    return span_label([job.chunk for job in batch])


def product_tags(product: str) -> list[str]:
    """Tags of every task of a product's fill: the source family ('arcticdem', 'tcvis') and the cube key."""
    return [product.split("-")[0], product]


def limited_tags(candidates: Sequence[str]) -> set[str]:
    """Those of `candidates` on which the Prefect server has an active concurrency limit (one API call).

    A tagged task run asks the server for a slot of every tag before it starts, limit or not: tens of ms per
    task on a busy server. The fill tags its download and commit tasks only when that does something.
    """
    from prefect.client.orchestration import get_client

    names: set[str] = set()
    try:
        with get_client(sync_client=True) as client:
            offset = 0
            while True:
                page = client.read_global_concurrency_limits(limit=200, offset=offset)
                names |= {limit.name for limit in page if limit.active}
                offset += len(page)
                if len(page) < 200:
                    break
    except Exception as error:  # noqa: BLE001 - cannot tell: tag everything, so any limit still holds
        log.warning("could not read the Prefect concurrency limits (%s); tagging every task", error)
        return set(candidates)
    return {tag for tag in candidates if f"tag:{tag}" in names}


def download_tags(product: str) -> list[str]:
    """Tags of a download task: the product's, plus 'download' and 'download-<family>' for concurrency limits.

    `prefect concurrency-limit create download 4` caps downloads of every source together;
    `prefect concurrency-limit create download-arcticdem 4` (or `download-tcvis`) caps one source only.
    A limit on 'arcticdem' or 'tcvis' would also hold back the discover and commit tasks. Download and commit
    tasks carry their tags only while the server has a limit on one of them (see `limited_tags`).
    """
    family = product.split("-")[0]
    return [*product_tags(product), "download", f"download-{family}"]


@dataclass(frozen=True)
class ChunkRun:
    """What one fill did to one chunk, for the chunk table artifact."""

    chunk: ChunkId
    action: str
    """'fetched' (downloaded and committed), 'rechecked' (partial, nothing new), 'reused' (full), 'by another fill'
    (downloaded by a fill of the same cube while this one waited) or 'failed'."""
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
    forward_library_logs()
    started = time.perf_counter()
    outcome = FillOutcome(ctx, new_report(ctx), list(windows))
    try:
        for label, window in windows:
            part, chunks, errors = _fill_one(ctx, window, label)
            _add_report(outcome.report, part)
            outcome.chunks.extend(chunks)
            outcome.errors.extend(errors)
    finally:  # the tasks ran on this process's threads (or, on Dask or Ray, elsewhere: then little was freed here)
        release_freed_memory(f"the {ctx.product.key} fill flow")
    outcome.report.seconds = time.perf_counter() - started
    return outcome


def _fill_one(ctx: FillContext, window: PixelWindow, label: str
              ) -> tuple[FillReport, list[ChunkRun], list[BaseException]]:
    started = time.perf_counter()
    log_fill_plan(ctx.data_dir, ctx.product, window, ctx.settings.revisit_days * 86400)  # before any request
    product = ctx.product.key
    tags = product_tags(product)
    discovery = discover_task.with_options(task_run_name=f"discover-{product}", tags=tags,
                                           **retry_options(ctx.policy))(ctx, window)
    commits: list[tuple[tuple[ChunkJob, ...], PrefectFuture[Any]]] = []
    download_tagged, commit_tagged = download_tags(product), [*tags, "commit"]
    limited = limited_tags([*download_tagged, "commit"]) if discovery.jobs else set()
    download_tagged = download_tagged if limited & set(download_tagged) else []
    commit_tagged = commit_tagged if limited & set(commit_tagged) else []

    def start(batch: tuple[ChunkJob, ...]) -> PrefectFuture[Any]:
        name = f"download-{batch_label(batch)}"
        return download_task.with_options(task_run_name=name, tags=download_tagged).submit(ctx, batch)

    def finish(batch: tuple[ChunkJob, ...], downloaded: PrefectFuture[Any]) -> None:
        name = f"commit-{batch_label(batch)}"
        committed = commit_task.with_options(task_run_name=name, tags=commit_tagged).submit(ctx, downloaded,
                                                                                            return_state=False)
        committed.add_done_callback(lambda _: claims.release(job.chunk for job in batch))
        commits.append((batch, committed))

    def run(jobs: list[ChunkJob]) -> None:
        # A few download tasks at a time, each batch's commit submitted as soon as its download is done: commits
        # run beside the next downloads (not queued behind all of them), and staged files never pile up.
        size = chunks_per_task(ctx.settings, len(jobs))
        run_bounded(batches(jobs, size), start, lambda running: next(as_completed(running)), finish,
                    task_slots(ctx.settings))

    report = new_report(ctx)
    with fill_claims(ctx) as claims:  # chunks another fill is downloading are waited for, not downloaded again
        shared = run_shared(ctx, claims, discovery.jobs, run)
        chunks, errors = _collect(report, commits, label)
    report.chunks_by_others, report.seconds_waiting = len(shared.by_others), shared.waited_seconds
    finish_report(ctx, report, discovery, started)
    chunks.extend(_settled_chunks(ctx, window, discovery, label, shared.by_others))
    return report, chunks, errors


def _collect(report: FillReport, commits: list[tuple[tuple[ChunkJob, ...], PrefectFuture[Any]]],
             label: str) -> tuple[list[ChunkRun], list[BaseException]]:
    """Wait for every batch; account the committed chunks, return every chunk's run and the others' errors."""
    errors: list[BaseException] = []
    chunks: list[ChunkRun] = []
    for batch, future in commits:
        try:
            outcomes: tuple[ChunkOutcome, ...] = future.result()
        except Exception as task_error:  # noqa: BLE001 - the whole task failed (e.g. a worker lost); its chunks did not
            outcomes = tuple(ChunkOutcome(job, error=task_error) for job in batch)
        for outcome in outcomes:
            chunk = outcome.job.chunk
            staged, record, error = outcome.staged, outcome.record, outcome.error
            if error is None and staged is not None and record is not None:
                add_to_report(report, staged, record)
                chunks.append(ChunkRun(chunk, "fetched", record, staged.applied, staged.bytes_read, staged.seconds,
                                       region=label))
            else:
                error = error or RuntimeError(f"chunk {chunk} was neither committed nor failed")
                errors.append(error)
                chunks.append(ChunkRun(chunk, "failed", None, error=f"{type(error).__name__}: {error}", region=label))
    return chunks, errors


def _settled_chunks(ctx: FillContext, window: PixelWindow, discovery: Discovery, label: str,
                    by_others: Sequence[ChunkId] = ()) -> list[ChunkRun]:
    """Rows for the chunks the fill did not download: full ones reused, partial ones searched again, and the ones
    another fill downloaded while this one waited."""
    if not discovery.reused and not discovery.rechecked and not by_others:
        return []
    latest = ctx.manifest().latest(window)
    return [ChunkRun(chunk, action, latest.get(chunk), region=label)
            for action, chunks in (("reused", discovery.reused), ("rechecked", discovery.rechecked),
                                   ("by another fill", by_others))
            for chunk in chunks]


def add_reports(product: str, parts: Sequence[FillReport]) -> FillReport:
    """One report over several fills (e.g. the years of a product with a time axis): counts summed."""
    total = FillReport(product, parts[0].source if parts else "", parts[0].source_url if parts else "")
    for part in parts:
        _add_report(total, part)
        total.seconds += part.seconds
    return total


def _add_report(total: FillReport, part: FillReport) -> None:
    """Add one window's report to the product's running total."""
    total.chunks_total += part.chunks_total
    total.chunks_reused += part.chunks_reused
    total.chunks_fetched += part.chunks_fetched
    total.chunks_rechecked += part.chunks_rechecked
    total.chunks_by_others += part.chunks_by_others
    total.seconds_waiting += part.seconds_waiting
    total.bytes_read += part.bytes_read
    total.records.extend(part.records)
    total.failures.extend(part.failures)

