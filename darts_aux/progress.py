"""A bar of chunks in the terminal while a fill runs, counted from the manifest rows the fill writes.

The manifest is the record of every fill (in-process, Prefect threads or remote Dask workers alike), so the bar
follows it rather than the fill's internals. Used by `darts-aux fetch`/`load` and by `download_*`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .grid import ChunkId
from .location import DataLocation
from .manifest import ChunkRecord, utc_now
from .products import Product

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
POLL_SECONDS = 0.3
"""How often the bar reads the manifest again."""


class ChunkProgress:
    """Chunks of a cube that are done: full before the work started, or given a manifest row since."""

    def __init__(self, data_dir: DataLocation, product: Product, chunks: Sequence[ChunkId]) -> None:
        self.data_dir, self.product, self.chunks = data_dir, product, tuple(chunks)
        self.started = utc_now()
        self.full_before = {c for c, rec in self._latest().items() if rec.status == "full"}
        self._last = len(self.full_before)

    @property
    def total(self) -> int:
        """Chunks the work covers."""
        return len(self.chunks)

    def done(self) -> int:
        """How many chunks are done now (never fewer than last time; a failed read keeps the last count)."""
        try:
            latest = self._latest()
        except Exception:  # noqa: BLE001 - a segment being compacted away, a half-written file: try again next poll
            return self._last
        fresh = {c for c, rec in latest.items() if rec.checked_at >= self.started}
        self._last = max(self._last, len(self.full_before | fresh))
        return self._last

    def _latest(self) -> dict[ChunkId, ChunkRecord]:
        from .download import latest_rows

        return latest_rows(self.data_dir, self.product, self.chunks)


def run_with_progress(work: Callable[[], T], progress: ChunkProgress, description: str, console: Console) -> T:
    """Run `work` in a worker thread while a bar on `console` counts the chunks done; return or raise its outcome."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="darts-aux-progress", daemon=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=progress.total, completed=progress.done())
        worker.start()
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            bar.update(task, completed=progress.done())
        bar.update(task, completed=progress.total if "result" in outcome else progress.done())
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result
