"""The fill steps (discover → download → commit) as plain functions, and an in-process runner.

The Prefect flows in `flows/` wrap exactly these functions; `run_inline` runs them with the same
retry policy in a thread pool when no Prefect API is configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import staging
from .errors import DiskFullError, SourceUnavailableError
from .freed_memory import release_freed_memory
from .grid import ChunkGrid, ChunkId, PixelWindow, span_label
from .location import DataLocation, as_location
from .manifest import ChunkRecord, Manifest, failure_note, status_for, union_coverage, utc_now
from .mosaic import fill_gaps
from .pipeline import GroupingWorkers, run_bounded
from .products import Product, arcticdem, tcvis
from .retry import RetryPolicy
from .settings import Settings, get_settings
from .sources.base import ChunkSource, ItemFailure, SourceItem
from .store import Cube, CubePaths, WindowWrite, cube_paths
from .wording import plural

log = logging.getLogger(__name__)
T = TypeVar("T")
COMPACT_AFTER_SEGMENTS = 64
COMMIT_THREADS = 2
"""Commit threads of an in-process fill: merging and encoding run in parallel, the commits one at a time."""
MAX_CHUNKS_PER_COMMIT = 16
"""Chunks one commit may take: icechunk's commit and the manifest append cost the same for one chunk or many."""
COMMIT_LINGER = 0.1
"""Seconds a downloaded chunk may wait for others to share its commit (a commit costs ~20 ms of icechunk's CPU)."""
COMMIT_BYTES = 256 * 2**20
"""Pixels one commit may take (at least one chunk); also what an in-process fill lets wait for a commit."""


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
    chunks_by_others: int = 0
    """Chunks another fill of the same cube downloaded while this one waited for them (see `sharing`)."""
    seconds_waiting: float = 0.0
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
        """The pixel source of the product's declared source kind, configured from the settings."""
        from .sources.kinds import chunk_source

        return chunk_source(self.product, self.settings, self.data_dir, self.policy)


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
    log.info("%s: %s in the ROI, %d full, %d to download, %d partial with nothing new",
             ctx.product.key, plural(len(chunks), "chunk"), len(reused), len(jobs), len(rechecked))
    return Discovery(tuple(jobs), reused, tuple(rechecked))


def download(ctx: FillContext, job: ChunkJob, in_memory: bool = False) -> StagedChunk:
    """Read the chunk's window of each new item; park the mosaic on disk for a commit task (or keep it in memory)."""
    pixels = ctx.source().fetch(job.chunk, job.new_items)
    path, held = None, None
    if pixels.applied and in_memory:
        held = pixels.arrays
    elif pixels.applied:
        path = str(staging.stage(ctx.cube().paths.staging, str(job.chunk), pixels.arrays))
    bytes_per_pixel = ctx.product.bytes_per_pixel
    log.info("chunk %s: read %s (%d failed) in %.2f s", job.chunk, plural(len(pixels.applied), "item"),
             len(pixels.failed), pixels.seconds)
    return StagedChunk(job.chunk, path, tuple(pixels.applied), tuple(pixels.failed), job.known_items,
                       pixels.pixels_read * bytes_per_pixel, pixels.seconds, held)


def commit(ctx: FillContext, staged: StagedChunk) -> ChunkRecord:
    """Merge one staged chunk into the cube (valid pixels already there win), then record it in the manifest."""
    return commit_group(ctx, [staged])[0]


def commit_group(ctx: FillContext, group: Sequence[StagedChunk]) -> list[ChunkRecord]:
    """Merge staged chunks into the cube in one commit (all or none), then record each in the manifest.

    One commit for several chunks pays icechunk's commit and the manifest append once: small chunks arriving
    faster than one commit each can be made are no longer held back by the commits.
    """
    try:
        records = _merge_and_record(ctx, group)
    except DiskFullError:  # nothing was committed; a rerun downloads the chunks again, so free their space now
        _discard_staged(ctx, group)
        raise
    _discard_staged(ctx, group)
    for record in records:
        log.info("chunk %s committed: %s, coverage %.3f, snapshot %s", record.chunk, record.status, record.coverage,
                 record.snapshot_id)
    return records


def commit_chunks(ctx: FillContext, group: Sequence[StagedChunk]) -> dict[ChunkId, ChunkRecord | Exception]:
    """Commit chunks together (retried by the policy); should that fail, one by one, so no chunk fails another.

    Returns each chunk's record, or the error that still stopped its commit. A full disk fails them all at once.
    """
    def one_by_one() -> dict[ChunkId, ChunkRecord | Exception]:
        return {s.chunk: _retried(ctx, "commit", f"chunk {s.chunk}", partial(commit, ctx, s)) for s in group}

    if len(group) <= 1:
        return one_by_one()
    label = _group_label(group)
    try:
        records = ctx.policy.call(lambda: commit_group(ctx, group), what=f"commit of chunks {label}")
    except DiskFullError as error:
        log.error("chunks %s: commit failed: %s", label, error)
        return {staged.chunk: error for staged in group}
    except Exception as error:  # noqa: BLE001 - one chunk's fault (a damaged staged file) must not fail the others
        log.warning("chunks %s: the joint commit failed (%s: %s); committing them one by one", label,
                    type(error).__name__, error)
        return one_by_one()
    return {record.chunk: record for record in records}


def chunks_per_commit(product: Product) -> int:
    """Chunks one commit takes: up to MAX_CHUNKS_PER_COMMIT while their pixels stay within COMMIT_BYTES.

    Small chunks share a commit's fixed cost; large ones (5000² at 2 m: 125 MB) go one or two at a time, so a
    killed fill loses little committed-to-be work and a conflict re-merges little.
    """
    chunk_bytes = product.fill_chunk**2 * product.bytes_per_pixel
    return max(1, min(MAX_CHUNKS_PER_COMMIT, COMMIT_BYTES // chunk_bytes))


def download_batch(ctx: FillContext, jobs: Sequence[ChunkJob]) -> tuple[ChunkOutcome, ...]:
    """Download chunks one after another, each retried by the policy; a chunk that still fails keeps its error.

    One failing chunk never costs the others of its batch their download (nor a second one).
    """
    outcomes = []
    for job in jobs:
        staged = _retried(ctx, "download", f"chunk {job.chunk}", partial(download, ctx, job))
        if isinstance(staged, BaseException):
            outcomes.append(ChunkOutcome(job, error=staged))
        else:
            outcomes.append(ChunkOutcome(job, staged=staged))
    return tuple(outcomes)


def commit_batch(ctx: FillContext, downloads: Sequence[ChunkOutcome]) -> tuple[ChunkOutcome, ...]:
    """Commit a batch's downloaded chunks, several per commit (see `commit_chunks`); failed downloads pass through."""
    staged = [outcome.staged for outcome in downloads if outcome.staged is not None]
    size = chunks_per_commit(ctx.product)
    results: dict[ChunkId, ChunkRecord | Exception] = {}
    for start in range(0, len(staged), size):
        results.update(commit_chunks(ctx, staged[start:start + size]))
    outcomes = []
    for outcome in downloads:
        result = results.get(outcome.staged.chunk) if outcome.staged is not None else None
        if result is None:
            outcomes.append(outcome)
        elif isinstance(result, Exception):
            outcomes.append(replace(outcome, error=result))
        else:
            outcomes.append(replace(outcome, record=result))
    return tuple(outcomes)


def _retried(ctx: FillContext, step: str, subject: str, call: Callable[[], T]) -> T | Exception:
    """`call` retried by the policy; the error that still ends it is logged and returned, not raised."""
    try:
        return ctx.policy.call(call, what=f"{step} of {subject}")
    except Exception as error:  # noqa: BLE001 - kept for the report; the batch goes on
        log.error("%s: %s failed: %s: %s", subject, step, type(error).__name__, error)
        return error


def _merge_and_record(ctx: FillContext, group: Sequence[StagedChunk]) -> list[ChunkRecord]:
    """The chunks merged and written outside the lock; under it, their manifest rows, the commit first, then the rows.

    Reading, merging and writing outside the lock lets other commits happen meanwhile; a commit of any of the same
    chunks in between is detected at our commit, which then reads and merges again under the lock.
    """
    cube, manifest, grid = ctx.cube(), ctx.manifest(), ctx.grid
    written = [staged for staged in group if staged.path or staged.pixels is not None]
    writes = [WindowWrite(grid.window(staged.chunk), _staged_merge(ctx, staged)) for staged in written]
    message = f"{ctx.product.key} {_group_label(group)}"
    prepared = None
    if writes:
        log.info("chunk %s: merging new items into the cube (%s, one commit)", _group_label(written),
                 plural(len(written), "chunk"))
        prepared = cube.prepare(writes, message)
    with cube.commit_lock():
        latest = manifest.latest(grid.covering([staged.chunk for staged in group]))
        records = [_new_record(ctx, staged, latest.get(staged.chunk)) for staged in group]
        if prepared is not None:
            chunks = {staged.chunk for staged in written}
            meta = {"kind": "chunks", "product": ctx.product.key, "fill_chunk": ctx.product.fill_chunk,
                    "chunks": [_commit_row(record) for record in records if record.chunk in chunks]}
            snapshot = cube.commit(writes, message, meta, prepared)
            log.info("chunk %s: snapshot %s committed; recording it in the manifest", _group_label(written), snapshot)
            records = [replace(r, snapshot_id=snapshot) if r.chunk in chunks else r for r in records]
        manifest.append(records)
        if len(manifest.files()) > COMPACT_AFTER_SEGMENTS:  # a long fill must not leave every read many files
            manifest.compact()
    return records


def _new_record(ctx: FillContext, staged: StagedChunk, previous: ChunkRecord | None) -> ChunkRecord:
    """The chunk's manifest row once its new items are merged (the snapshot is the previous one until committed)."""
    applied = tuple(sorted(set(previous.items_applied if previous else ()) | set(staged.applied)))
    earlier_failures = set(previous.items_failed if previous else ())
    failed = tuple(sorted((earlier_failures | {f.item_id for f in staged.failed}) - set(applied)))
    known = {item.id: item for item in staged.known_items}
    fresh = ctx.source().covered(staged.chunk, [known[i] for i in applied if i in known])
    cov, covered = union_coverage(ctx.grid, staged.chunk, previous, fresh)
    note = failure_note(staged.failed, previous.note if previous and failed else "")
    snapshot = previous.snapshot_id if previous else None
    return ChunkRecord(staged.chunk, status_for(cov, failed), applied, failed, cov, utc_now(), snapshot, covered, note)


def _commit_row(record: ChunkRecord) -> dict[str, object]:
    """A chunk's row in the commit metadata: what `manifest rebuild` and `verify` read back from the history."""
    return {"chunk": str(record.chunk), "status": record.status, "items_applied": list(record.items_applied),
            "items_failed": list(record.items_failed), "coverage": record.coverage,
            "covered": record.covered.hex() if record.covered else None, "note": record.note}


def _staged_merge(ctx: FillContext, staged: StagedChunk) -> Callable[[dict[str, np.ndarray] | None], dict]:
    """How a staged chunk merges into what is stored (its pixels are loaded only when the merge runs)."""

    def merge(existing: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if staged.pixels is not None:
            new_pixels = dict(staged.pixels)
        else:
            new_pixels = staging.load(staging.locate(ctx.paths.staging, str(staged.path)))
        return _merge(ctx.product, existing, new_pixels)

    return merge


def _discard_staged(ctx: FillContext, group: Sequence[StagedChunk]) -> None:
    """Delete the staged files of committed (or uncommittable) chunks."""
    for staged in group:
        if staged.path:
            staging.discard(staging.locate(ctx.paths.staging, staged.path))


def _group_label(group: Sequence[StagedChunk]) -> str:
    """'r3c4' for one chunk, 'r3c4+12' for thirteen starting at r3c4 (as in the commit message)."""
    return span_label([staged.chunk for staged in group])


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

    At most `download_workers` downloads run at once, kept in memory (no staging). COMMIT_THREADS commit threads
    each take the downloaded chunks waiting (up to `chunks_per_commit`, waiting COMMIT_LINGER for more) into one
    commit, merging and writing outside the commit lock, while the next chunks download. Downloads are held back
    while `waiting_limit` chunks wait, so memory stays bounded when commits are the slower side. Chunks another fill
    of the cube is downloading are waited for, not downloaded twice (`sharing.run_shared`).
    """
    from .sharing import fill_claims, run_shared

    started = time.perf_counter()
    report = new_report(ctx)
    staging.sweep(ctx.paths.staging)
    discovery = discover(ctx, window)
    policy = ctx.policy
    workers = ctx.settings.download_workers

    def start(job: ChunkJob) -> Future[StagedChunk]:
        return downloads.submit(policy.call, lambda: download(ctx, job, in_memory=True),
                                what=f"download of {job.chunk}")

    def commit_waiting(group: list[StagedChunk]) -> list[tuple[StagedChunk, ChunkRecord]]:
        try:
            results = commit_chunks(ctx, group)
        finally:
            claims.release(staged.chunk for staged in group)
        records: dict[ChunkId, ChunkRecord] = {}
        for chunk, result in results.items():
            if isinstance(result, Exception):
                raise result
            records[chunk] = result
        # committed: what the report needs stays, the pixels go (kept until the fill's end, a scene's chunks add up)
        return [(replace(staged, pixels=None), records[staged.chunk]) for staged in group]

    def run(jobs: list[ChunkJob]) -> None:
        run_bounded(jobs, start, lambda running: next(as_completed(running)),
                    lambda _, future: commits.put(future.result()), workers)

    try:
        with fill_claims(ctx) as claims, ThreadPoolExecutor(workers, thread_name_prefix="download") as downloads, \
                GroupingWorkers(commit_waiting, COMMIT_THREADS, chunks_per_commit(ctx.product),
                                waiting_limit(ctx.product), COMMIT_LINGER, name="commit") as commits:
            shared = run_shared(ctx, claims, discovery.jobs, run)
            for staged, record in commits.close():
                add_to_report(report, staged, record)
    finally:
        release_freed_memory(f"the {ctx.product.key} fill")
    report.chunks_by_others, report.seconds_waiting = len(shared.by_others), shared.waited_seconds
    finish_report(ctx, report, discovery, started)
    return report


def waiting_limit(product: Product) -> int:
    """Downloaded chunks an in-process fill lets wait for a commit: what one commit takes, at least two."""
    return max(2, chunks_per_commit(product))


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
    by_others = (f", {report.chunks_by_others} filled by other fills ({report.seconds_waiting:.1f} s waited)"
                 if report.chunks_by_others else "")
    log.info("%s fill: %s fetched, %d reused, %d rechecked%s, %.1f MB read in %.1f s",
             ctx.product.key, plural(report.chunks_fetched, "chunk"), report.chunks_reused, report.chunks_rechecked,
             by_others, report.bytes_read / 1e6, report.seconds)
