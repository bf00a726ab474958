"""The fill steps (discover → download → commit) as plain functions, and an in-process runner.

The Prefect flows in `flows/` wrap exactly these functions; `run_inline` runs them with the same
retry policy in a thread pool when no Prefect API is configured.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import staging
from .errors import DiskFullError, SourceUnavailableError
from .grid import ChunkGrid, ChunkId, PixelWindow
from .location import DataLocation, as_location
from .manifest import ChunkRecord, Manifest, failure_note, status_for, union_coverage, utc_now
from .mosaic import fill_gaps
from .pipeline import run_bounded
from .products import Product, arcticdem, tcvis
from .retry import RetryPolicy
from .settings import Settings, get_settings
from .sources.base import ChunkSource, ItemFailure, SourceItem
from .store import Cube, CubePaths, cube_paths

log = logging.getLogger(__name__)
T = TypeVar("T")
COMPACT_AFTER_SEGMENTS = 64
COMMIT_THREADS = 2
"""Commits an in-process fill runs at once: merging and encoding run in parallel, the commits one at a time."""
COMMITS_WAITING = 2
"""Downloaded chunks an in-process fill lets wait for a commit thread before it holds back new downloads."""


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to download: the items not yet merged into it, and every item known over it."""

    chunk: ChunkId
    new_items: tuple[SourceItem, ...]
    known_items: tuple[SourceItem, ...]


@dataclass(frozen=True)
class Discovery:
    """What a fill must do: chunks to download, chunks already full, partial chunks with nothing new."""

    jobs: tuple[ChunkJob, ...]
    reused: tuple[ChunkId, ...]
    rechecked: tuple[ChunkId, ...]


@dataclass(frozen=True)
class StagedChunk:
    """A downloaded chunk waiting for its commit: parked on disk (`path`), or held in memory by an in-process fill."""

    chunk: ChunkId
    path: str | None
    applied: tuple[str, ...]
    failed: tuple[ItemFailure, ...]
    known_items: tuple[SourceItem, ...]
    bytes_read: int
    seconds: float
    pixels: Mapping[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """The mosaic itself when it was not staged (the in-process runner commits in the same process)."""


@dataclass(frozen=True)
class ChunkOutcome:
    """One chunk of a batch: staged after its download, recorded after its commit, or the error that stopped it."""

    job: ChunkJob
    staged: StagedChunk | None = None
    record: ChunkRecord | None = None
    error: BaseException | None = None


@dataclass
class FillReport:
    """What one fill did, for logs, the CLI and Prefect artifacts."""

    product: str
    source: str = ""
    source_url: str = ""
    chunks_total: int = 0
    chunks_reused: int = 0
    chunks_fetched: int = 0
    chunks_rechecked: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    records: list[ChunkRecord] = field(default_factory=list)
    failures: list[tuple[str, ItemFailure]] = field(default_factory=list)

    def raise_for_failures(self) -> None:
        """Raise SourceUnavailableError naming the items that could not be read (their chunks stay partial)."""
        if not self.failures:
            return
        listed = "; ".join(f"{chunk}: {f.item_id} ({f.reason})" for chunk, f in self.failures[:5])
        more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        failing = sorted({f.source or self.source for _, f in self.failures})
        source = failing[0] if len(failing) == 1 else self.source
        where = "the tiles' file server" if source == "cog" else self.source_url
        raise SourceUnavailableError(
            f"{len(self.failures)} reads from {source} ({where}) failed after retries, their chunks "
            f"are recorded 'partial': {listed}{more}. Run the same load again to retry them.",
            source=source,
        )


@dataclass(frozen=True)
class FillContext:
    """Everything a fill step needs, built from plain parameters in whatever process runs the step."""

    product: Product
    data_dir: DataLocation
    settings: Settings

    @property
    def grid(self) -> ChunkGrid:
        return ChunkGrid(self.product)

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.retries, s.retry_delay_seconds, s.retry_jitter)

    @property
    def paths(self) -> CubePaths:
        """Where the cube's parts live (nothing is created by asking)."""
        return cube_paths(self.data_dir, self.product)

    def cube(self) -> Cube:
        """The cube, created on first use (metadata only)."""
        return _open_cube(self.data_dir, self.product)

    def manifest(self) -> Manifest:
        """The cube's manifest (readable, and empty, before the cube exists)."""
        return Manifest(self.paths.manifest, self.grid)

    def source(self) -> ChunkSource:
        """The product's pixel source, configured from the settings."""
        if self.product.key.startswith("tcvis"):
            from .sources.tcvis import TCVISSource

            return TCVISSource(self.product, self.settings, self.policy)
        from .sources.arcticdem import ArcticDEMSource

        return ArcticDEMSource(self.product, self.settings, self.data_dir, self.policy)


@lru_cache(maxsize=32)
def _open_cube(data_dir: Path, product: Product) -> Cube:
    return Cube.open_or_create(data_dir, product)


def arcticdem_context(resolution: int, data_dir: str | Path, settings: Settings | None = None) -> FillContext:
    """The fill context of an ArcticDEM cube."""
    return FillContext(arcticdem(resolution), as_location(data_dir), settings or get_settings())


def tcvis_context(edition: str, data_dir: str | Path, settings: Settings | None = None) -> FillContext:
    """The fill context of a TCVIS cube."""
    return FillContext(tcvis(edition), as_location(data_dir), settings or get_settings())


# -- the three steps ---------------------------------------------------------------------------


def discover(ctx: FillContext, window: PixelWindow) -> Discovery:
    """Chunks of the window not full → one item search → per chunk, the items not yet applied."""
    grid, manifest = ctx.grid, ctx.manifest()
    chunks = grid.chunks(window)
    latest = manifest.latest(window)
    todo = [c for c in chunks if not (c in latest and latest[c].status == "full")]
    reused = tuple(c for c in chunks if c not in todo)
    if not todo:
        return Discovery((), reused, ())
    by_chunk = ctx.source().items(todo)
    jobs, rechecked = [], []
    for chunk in todo:
        applied = set(latest[chunk].items_applied) if chunk in latest else set()
        new = tuple(item for item in by_chunk[chunk] if item.id not in applied)
        if new:
            jobs.append(ChunkJob(chunk, new, by_chunk[chunk]))
        else:
            rechecked.append(chunk)
    _record_rechecked(ctx, window, rechecked, by_chunk)
    log.info("%s: %d chunks in the ROI, %d full, %d to download, %d partial with nothing new",
             ctx.product.key, len(chunks), len(reused), len(jobs), len(rechecked))
    return Discovery(tuple(jobs), reused, tuple(rechecked))


def download(ctx: FillContext, job: ChunkJob, in_memory: bool = False) -> StagedChunk:
    """Read the chunk's window of each new item; park the mosaic on disk for a commit task (or keep it in memory)."""
    pixels = ctx.source().fetch(job.chunk, job.new_items)
    path, held = None, None
    if pixels.applied and in_memory:
        held = pixels.arrays
    elif pixels.applied:
        path = str(staging.stage(ctx.cube().paths.staging, str(job.chunk), pixels.arrays))
    bytes_per_pixel = sum(np.dtype(v.dtype).itemsize for v in ctx.product.variables)
    log.info("chunk %s: read %d items (%d failed) in %.2f s", job.chunk, len(pixels.applied), len(pixels.failed), pixels.seconds)
    return StagedChunk(job.chunk, path, tuple(pixels.applied), tuple(pixels.failed), job.known_items,
                       pixels.pixels_read * bytes_per_pixel, pixels.seconds, held)


def commit(ctx: FillContext, staged: StagedChunk, before_commit: Callable[[], None] | None = None) -> ChunkRecord:
    """Merge a staged chunk into the cube (valid pixels already there win), then record it in the manifest."""
    new_pixels = dict(staged.pixels) if staged.pixels is not None else (
        staging.load(staging.locate(ctx.paths.staging, staged.path)) if staged.path else None)
    try:
        record = _merge_and_record(ctx, staged, new_pixels, before_commit)
    except DiskFullError:
        if staged.path:  # nothing was committed; a rerun downloads the chunk again, so free its space now
            staging.discard(staging.locate(ctx.paths.staging, staged.path))
        raise
    if staged.path:
        staging.discard(staging.locate(ctx.paths.staging, staged.path))
    log.info("chunk %s committed: %s, coverage %.3f, snapshot %s", staged.chunk, record.status, record.coverage,
             record.snapshot_id)
    return record


def download_batch(ctx: FillContext, jobs: Sequence[ChunkJob]) -> tuple[ChunkOutcome, ...]:
    """Download chunks one after another, each retried by the policy; a chunk that still fails keeps its error.

    One failing chunk never costs the others of its batch their download (nor a second one).
    """
    outcomes = []
    for job in jobs:
        staged = _retried(ctx, "download", job.chunk, lambda j=job: download(ctx, j))  # type: ignore[misc]
        failed = isinstance(staged, BaseException)
        outcomes.append(ChunkOutcome(job, error=staged) if failed else ChunkOutcome(job, staged=staged))
    return tuple(outcomes)


def commit_batch(ctx: FillContext, downloads: Sequence[ChunkOutcome]) -> tuple[ChunkOutcome, ...]:
    """Commit each downloaded chunk of a batch (each retried by the policy); failed downloads pass through."""
    outcomes = []
    for outcome in downloads:
        staged = outcome.staged
        if staged is None:
            outcomes.append(outcome)
            continue
        record = _retried(ctx, "commit", staged.chunk, lambda s=staged: commit(ctx, s))  # type: ignore[misc]
        failed = isinstance(record, BaseException)
        outcomes.append(replace(outcome, error=record) if failed else replace(outcome, record=record))
    return tuple(outcomes)


def _retried(ctx: FillContext, step: str, chunk: ChunkId, call: Callable[[], T]) -> T | Exception:
    """`call` retried by the policy; the error that still ends it is logged and returned, not raised."""
    try:
        return ctx.policy.call(call, what=f"{step} of {chunk}")
    except Exception as error:  # noqa: BLE001 - kept for the report; the batch goes on
        log.error("chunk %s: %s failed: %s: %s", chunk, step, type(error).__name__, error)
        return error


def _merge_and_record(ctx: FillContext, staged: StagedChunk, new_pixels: dict[str, np.ndarray] | None,
                      before_commit: Callable[[], None] | None) -> ChunkRecord:
    """The chunk merged and written outside the lock; under it, the new manifest row, the commit first, then the row.

    Reading, merging and writing outside the lock lets other chunks commit meanwhile; a commit of this same chunk
    in between is detected at our commit, which then reads and merges again under the lock.
    """
    cube, manifest, grid = ctx.cube(), ctx.manifest(), ctx.grid
    window = grid.window(staged.chunk)
    message = f"{ctx.product.key} {staged.chunk}"

    def merge(existing: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        return _merge(ctx.product, existing, new_pixels)

    prepared = None
    if new_pixels is not None:
        log.info("chunk %s: merging %d new items into the cube", staged.chunk, len(staged.applied))
        prepared = cube.prepare_window(window, merge, message)
    with cube.commit_lock():
        previous = manifest.latest(window).get(staged.chunk)
        applied = tuple(sorted(set(previous.items_applied if previous else ()) | set(staged.applied)))
        earlier_failures = set(previous.items_failed if previous else ())
        failed = tuple(sorted((earlier_failures | {f.item_id for f in staged.failed}) - set(applied)))
        known = {item.id: item for item in staged.known_items}
        fresh = ctx.source().covered(staged.chunk, [known[i] for i in applied if i in known])
        cov, covered = union_coverage(grid, staged.chunk, previous, fresh)
        status = status_for(cov, failed)
        note = failure_note(staged.failed, previous.note if previous and failed else "")
        snapshot = previous.snapshot_id if previous else None
        if prepared is not None:
            meta = {"kind": "chunk", "product": ctx.product.key, "chunk": str(staged.chunk), "status": status,
                    "items_applied": list(applied), "items_failed": list(failed), "coverage": cov,
                    "covered": covered.hex() if covered else None, "note": note}
            snapshot = cube.commit_window(window, merge, message, meta, before_commit, prepared)
            log.info("chunk %s: snapshot %s committed; recording it in the manifest", staged.chunk, snapshot)
        record = ChunkRecord(staged.chunk, status, applied, failed, cov, utc_now(), snapshot, covered, note)
        manifest.append([record])
        if len(manifest.files()) > COMPACT_AFTER_SEGMENTS:  # a long fill must not leave every read many files
            manifest.compact()
    return record


def compact_if_needed(ctx: FillContext, threshold: int = COMPACT_AFTER_SEGMENTS) -> int:
    """Fold manifest segments once there are many; returns how many files were folded."""
    manifest = ctx.manifest()
    if len(manifest.files()) <= threshold:
        return 0
    with ctx.cube().commit_lock():
        return manifest.compact()


def _merge(product: Product, existing: dict | None, new_pixels: dict) -> dict:
    """The chunk after a commit: existing valid pixels kept and gaps filled, or replaced whole (or new: as is)."""
    if existing is None or product.merge == "replace":
        return {v.name: new_pixels[v.name] for v in product.variables}
    merged = dict(existing)  # read afresh for this merge (zarr returns new arrays): filled in place
    for variable in product.variables:
        fill_gaps(merged[variable.name], new_pixels[variable.name], variable.fill_value)
    return merged


def _record_rechecked(ctx: FillContext, window: PixelWindow, chunks: list[ChunkId],
                      by_chunk: dict[ChunkId, tuple[SourceItem, ...]]) -> None:
    """Note that partial chunks were searched again and nothing new was found (resets their revisit clock)."""
    if not chunks:
        return
    manifest, grid, now = ctx.manifest(), ctx.grid, utc_now()
    with ctx.cube().commit_lock():
        latest = manifest.latest(window)  # only the fill's chunks: the whole manifest can hold a million rows
        records = []
        for chunk in chunks:
            # nothing new was found, so every item listed over the chunk is applied and none failed
            previous = latest.get(chunk)
            items = by_chunk.get(chunk, ())
            if previous is None:
                cov, covered = union_coverage(grid, chunk, None, ctx.source().covered(chunk, items))
                records.append(ChunkRecord(chunk, "partial", (), (), cov, now, None, covered))
                continue
            fresh = ctx.source().covered(chunk, [item for item in items if item.id in previous.items_applied])
            cov, covered = union_coverage(grid, chunk, previous, fresh)
            records.append(replace(previous, status=status_for(cov, ()), items_failed=(), coverage=cov,
                                   checked_at=now, covered=covered, note=""))
        manifest.append(records)


# -- the in-process runner -----------------------------------------------------------------------


def run_inline(ctx: FillContext, window: PixelWindow) -> FillReport:
    """Discover, download (thread pool) and commit in this process, with the Prefect tasks' retry policy.

    At most `download_workers` downloads run at once, kept in memory (no staging); COMMIT_THREADS commit them as
    they come (each merges and writes its chunk outside the commit lock, so two chunks are encoded at once) while
    the next ones download. At most COMMITS_WAITING downloaded chunks wait for a commit thread, so memory stays
    bounded when commits are the slower side.
    """
    started = time.perf_counter()
    report = new_report(ctx)
    staging.sweep(ctx.paths.staging)
    discovery = discover(ctx, window)
    policy = ctx.policy
    workers = ctx.settings.download_workers
    waiting: deque[Future[tuple[StagedChunk, ChunkRecord]]] = deque()

    def start(job: ChunkJob) -> Future[StagedChunk]:
        return downloads.submit(policy.call, lambda: download(ctx, job, in_memory=True), what=f"download of {job.chunk}")

    def commit_one(staged: StagedChunk) -> tuple[StagedChunk, ChunkRecord]:
        return staged, policy.call(lambda: commit(ctx, staged), what=f"commit of {staged.chunk}")

    def account_oldest() -> None:
        add_to_report(report, *waiting.popleft().result())

    def finish(_: ChunkJob, future: Future[StagedChunk]) -> None:
        staged = future.result()
        while len(waiting) >= COMMITS_WAITING + COMMIT_THREADS:
            account_oldest()
        waiting.append(commits.submit(commit_one, staged))

    with ThreadPoolExecutor(workers, thread_name_prefix="download") as downloads, \
            ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="commit") as commits:
        run_bounded(discovery.jobs, start, lambda running: next(as_completed(running)), finish, workers)
        while waiting:
            account_oldest()
    finish_report(ctx, report, discovery, started)
    return report


def new_report(ctx: FillContext) -> FillReport:
    """An empty report naming the product and its source."""
    source = ctx.source()
    return FillReport(ctx.product.key, source.name, source.url)


def add_to_report(report: FillReport, staged: StagedChunk, record: ChunkRecord) -> None:
    """Account one committed chunk."""
    report.records.append(record)
    report.chunks_fetched += 1
    report.bytes_read += staged.bytes_read
    report.failures.extend((str(staged.chunk), f) for f in staged.failed)


def finish_report(ctx: FillContext, report: FillReport, discovery: Discovery, started: float) -> None:
    """Totals, manifest compaction and the closing log line."""
    report.chunks_reused = len(discovery.reused)
    report.chunks_rechecked = len(discovery.rechecked)
    report.chunks_total = report.chunks_reused + report.chunks_rechecked + len(discovery.jobs)
    compact_if_needed(ctx)
    report.seconds = time.perf_counter() - started
    log.info("%s fill: %d chunks fetched, %d reused, %d rechecked, %.1f MB read in %.1f s",
             ctx.product.key, report.chunks_fetched, report.chunks_reused, report.chunks_rechecked,
             report.bytes_read / 1e6, report.seconds)
