"""Prefetch of an area of interest: fill the chunks its geometries intersect, through the fill flows.

The chunks a prefetch skips are those the manifest settles (full, or partial and checked within the revisit
interval), so a second prefetch of the same area asks no source anything. The others are grouped into few
cube windows (darts_aux.aoi.chunk_windows) and filled by the `download_chunks` Prefect flow when a Prefect API
is configured, else in-process by the same steps (`fill.run_inline`), window after window.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import OfflineError, SourceUnavailableError
from .grid import ChunkGrid, ChunkId, PixelWindow
from .location import DataLocation
from .manifest import ChunkRecord, Manifest, utc_now
from .products import Product
from .store import check_cube_folder, check_writable, cube_exists, cube_paths
from .wording import plural

if TYPE_CHECKING:
    from .fill import FillReport
    from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadReport:
    """What one download_* call did over its area of interest."""

    product: str
    """The cube, e.g. 'arcticdem-32m' or 'tcvis-2000-2019'."""
    chunks: int
    """Chunks the area's geometries intersect."""
    chunks_fetched: int
    """Chunks whose pixels this call downloaded and committed."""
    chunks_already_full: int
    """Chunks that were full before the call (nothing was asked for them)."""
    chunks_partial: int
    """Chunks partial after the call: the source has no data over part of them (or reads of them failed)."""
    chunks_by_others: int = 0
    """Chunks another fill of the same cube downloaded while this call waited for them."""
    bytes_read: int = 0
    """Uncompressed bytes of pixels read from the source."""
    seconds: float = 0.0
    failures: tuple[str, ...] = field(default_factory=tuple)
    """One line per failed read or chunk ('r0012c0034: item … (reason)'); their chunks stay partial or missing."""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise SourceUnavailableError naming the failures, if any (rerun the same download to retry them)."""
        if self.failures:
            more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
            raise SourceUnavailableError(f"{len(self.failures)} failures while downloading {self.product}: "
                                         f"{'; '.join(self.failures[:5])}{more}. Run the same download again to "
                                         "retry them.", source=self.product)


@dataclass(frozen=True)
class Plan:
    """The chunks of an area split by what the manifest says: full, settled partial, and to fill."""

    chunks: tuple[ChunkId, ...]
    full: tuple[ChunkId, ...]
    settled: tuple[ChunkId, ...]
    todo: tuple[ChunkId, ...]


def plan(data_dir: DataLocation, product: Product, chunks: Sequence[ChunkId], revisit_seconds: float) -> Plan:
    """Which chunks need a fill: not full, and not partial-and-checked within the revisit interval."""
    check_cube_folder(data_dir, product)
    latest = latest_rows(data_dir, product, chunks)
    now = utc_now()
    full = tuple(c for c in chunks if c in latest and latest[c].status == "full")
    settled = tuple(c for c in chunks if c in latest and c not in full and latest[c].is_settled(now, revisit_seconds))
    todo = tuple(c for c in chunks if c not in latest or not latest[c].is_settled(now, revisit_seconds))
    return Plan(tuple(chunks), full, settled, todo)


def latest_rows(data_dir: DataLocation, product: Product, chunks: Sequence[ChunkId]) -> dict[ChunkId, ChunkRecord]:
    """The latest manifest row of each chunk that has one (one read of the row groups under the chunks)."""
    if not chunks or not cube_exists(data_dir, product):
        return {}
    grid = ChunkGrid(product)
    wanted = set(chunks)
    latest = Manifest(cube_paths(data_dir, product).manifest, grid).latest(grid.covering(list(chunks)))
    return {c: r for c, r in latest.items() if c in wanted}


def download(product: Product, chunks: Sequence[ChunkId], data_dir: DataLocation, settings: Settings,
             progress: bool | None = None) -> DownloadReport:
    """Fill the chunks of an area that the manifest does not settle; a report of what was done."""
    from .aoi import chunk_windows

    started = time.perf_counter()
    todo_plan = plan(data_dir, product, chunks, settings.revisit_days * 86400)
    fill_report: FillReport | None = None
    errors: list[str] = []
    if todo_plan.todo:
        if settings.offline:
            raise OfflineError(f"DARTS_AUX_OFFLINE is set, so nothing is downloaded, yet {len(todo_plan.todo)} of "
                               f"{len(chunks)} chunks of {product.key} need a download; unset DARTS_AUX_OFFLINE on "
                               "the machine that prefetches.", missing=len(todo_plan.todo))
        check_writable(data_dir, product)  # before the first request (and before a progress bar)
        windows = chunk_windows(product, todo_plan.todo)
        log.info("%s: %d of %s to fill in %s", product.key, len(todo_plan.todo), plural(len(chunks), "chunk"),
                 plural(len(windows), "window"))

        def work() -> tuple[FillReport, list[str]]:
            return run_fill(data_dir, product, windows, settings)

        show = sys.stderr.isatty() if progress is None else progress
        if show:
            from rich.console import Console

            from .progress import ChunkProgress, run_with_progress

            fill_report, errors = run_with_progress(work, ChunkProgress(data_dir, product, todo_plan.todo),
                                                    f"downloading {product.key}", Console(stderr=True))
        else:
            fill_report, errors = work()
    return build_report(data_dir, product, todo_plan, fill_report, errors, time.perf_counter() - started)


def combined_report(product_key: str, reports: Sequence[DownloadReport]) -> DownloadReport:
    """One report over the time steps' downloads of a product: counts summed over (chunk, step) pairs.

    Failure lines are prefixed with their step's cube ('alphaearth-10m@2019: r0012c0034: …').
    """
    return DownloadReport(
        product=product_key,
        chunks=sum(r.chunks for r in reports),
        chunks_fetched=sum(r.chunks_fetched for r in reports),
        chunks_already_full=sum(r.chunks_already_full for r in reports),
        chunks_partial=sum(r.chunks_partial for r in reports),
        chunks_by_others=sum(r.chunks_by_others for r in reports),
        bytes_read=sum(r.bytes_read for r in reports),
        seconds=sum(r.seconds for r in reports),
        failures=tuple(f"{r.product}: {line}" for r in reports for line in r.failures),
    )


def run_fill(data_dir: DataLocation, product: Product, windows: list[PixelWindow],
             settings: Settings) -> tuple[FillReport, list[str]]:
    """Fill the windows through the `download_chunks` flow, or in-process window after window.

    Returns the fill's report and the errors that stopped chunks (as lines); each window is tried.
    """
    from .api import use_prefect

    if use_prefect(settings):
        from .flows.download import run_download_chunks

        try:
            return run_download_chunks(product, windows, data_dir, settings), []
        except Exception as error:  # noqa: BLE001 - the flow raises its first chunk error after trying them all
            return _empty_report(product), [_line(error)]
    return _run_inline(data_dir, product, windows, settings)


def _run_inline(data_dir: DataLocation, product: Product, windows: list[PixelWindow],
                settings: Settings) -> tuple[FillReport, list[str]]:
    """Each window by `fill.run_inline`; a window that fails does not stop the others."""
    from .fill import FillContext, run_inline

    ctx = FillContext(product, data_dir, settings)
    total, errors = _empty_report(product), []
    for window in windows:
        try:
            part = run_inline(ctx, window)
        except Exception as error:  # noqa: BLE001 - kept for the report; the next window still fills
            log.error("%s window %s: %s", product.key, window, _line(error))
            errors.append(_line(error))
            continue
        _add(total, part)
    return total, errors


def _empty_report(product: Product) -> FillReport:
    """A fill report with nothing done yet."""
    from .fill import FillReport

    return FillReport(product.key)


def _add(total: FillReport, part: FillReport) -> None:
    """Add one window's fill report to the running total."""
    total.chunks_fetched += part.chunks_fetched
    total.chunks_by_others += part.chunks_by_others
    total.bytes_read += part.bytes_read
    total.failures.extend(part.failures)


def _line(error: BaseException) -> str:
    """An error as one line: its type and its message."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def build_report(data_dir: DataLocation, product: Product, todo_plan: Plan, fill_report: FillReport | None,
                 errors: list[str], seconds: float) -> DownloadReport:
    """The call's report: counts from the plan and the fill, the partial count from the manifest afterwards."""
    after = latest_rows(data_dir, product, todo_plan.chunks)
    partial = sum(1 for record in after.values() if record.status == "partial")
    failures = [f"{chunk}: {f.item_id} ({f.reason})" for chunk, f in (fill_report.failures if fill_report else [])]
    report = DownloadReport(
        product=product.key, chunks=len(todo_plan.chunks),
        chunks_fetched=fill_report.chunks_fetched if fill_report else 0,
        chunks_already_full=len(todo_plan.full), chunks_partial=partial,
        chunks_by_others=fill_report.chunks_by_others if fill_report else 0,
        bytes_read=fill_report.bytes_read if fill_report else 0, seconds=seconds,
        failures=tuple(failures + errors),
    )
    log_report(report)
    return report


def log_report(report: DownloadReport) -> None:
    """One line of prose: what the download did (a warning when something failed)."""
    text = (f"{report.product}: {plural(report.chunks, 'chunk')} in the area, {report.chunks_fetched} fetched, "
            f"{report.chunks_already_full} already full, {report.chunks_partial} partial, "
            f"{report.bytes_read / 1e6:,.1f} MB read in {report.seconds:.1f} s")
    if report.failures:
        log.warning("%s; %s (see report.failures)", text, plural(len(report.failures), "failure"))
    else:
        log.info("%s", text)


def report_table(report: DownloadReport, data_dir: DataLocation | str) -> Any:
    """A rich table of one download: chunks in the area, fetched, already full, partial, failures, MB, seconds."""
    from rich.table import Table

    table = Table(title=f"download {report.product}", caption=f"in {data_dir}; only the chunks the aoi's geometries "
                  "intersect")
    for column in ("cube", "chunks", "fetched", "already full", "partial", "failures", "MB read", "seconds"):
        table.add_column(column, justify="left" if column == "cube" else "right")
    table.add_row(report.product, str(report.chunks), str(report.chunks_fetched), str(report.chunks_already_full),
                  str(report.chunks_partial), str(len(report.failures)), f"{report.bytes_read / 1e6:,.1f}",
                  f"{report.seconds:.1f}")
    return table
