"""`darts-aux verify`: every chunk the manifest calls full is in the store's history and reads back whole.

The manifest is the fast path's only evidence, so a row that promises pixels the store does not hold
(a lost commit, a manifest copied from elsewhere) or a chunk whose stored bytes no longer decode
would serve holes silently. `verify` finds both; `repair` turns unbacked rows back to `partial` so the
next load fetches what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .cubes import present_products, records_from_history
from .grid import ChunkGrid, ChunkId
from .location import DataLocation
from .manifest import ChunkRecord, Manifest, utc_now
from .products import Product
from .store import Cube

Progress = Callable[[int, int], None]
"""Called with (chunks checked, chunks to check)."""


@dataclass(frozen=True)
class ChunkProblem:
    """One chunk whose manifest row the store does not back, and what is wrong."""

    chunk: ChunkId
    status: str
    problem: str
    repairable: bool
    """True when marking the row partial lets the next load fetch the missing items."""


@dataclass(frozen=True)
class CubeVerdict:
    """What verifying one cube found."""

    product: Product
    checked: int
    problems: tuple[ChunkProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cube(data_dir: DataLocation, product: Product, progress: Progress | None = None) -> CubeVerdict:
    """Check every committed or full row of a cube's manifest against the store's history and pixels."""
    cube = Cube.open(data_dir, product)
    grid = ChunkGrid(product)
    rows = [r for r in Manifest(cube.paths.manifest, grid).latest().values() if r.status == "full" or r.snapshot_id]
    committed = {r.chunk: r for r in records_from_history(cube)}
    arrays = cube.arrays()
    problems: list[ChunkProblem] = []
    for done, row in enumerate(rows, 1):
        problem = _unbacked(row, committed.get(row.chunk))
        if problem:
            problems.append(ChunkProblem(row.chunk, row.status, problem, repairable=True))
        else:
            window = grid.window(row.chunk)
            for name, array in arrays.items():
                try:
                    array[window.slices]
                except Exception as error:  # noqa: BLE001 - any decode or storage failure means unreadable
                    problems.append(ChunkProblem(row.chunk, row.status, f"{name} is unreadable: {error}", False))
                    break
        if progress:
            progress(done, len(rows))
    return CubeVerdict(product, len(rows), tuple(problems))


def _unbacked(row: ChunkRecord, committed: ChunkRecord | None) -> str:
    """Why the store's history does not back a manifest row ('' when it does)."""
    if committed is None:
        return "no commit in the store holds this chunk's pixels"
    missing = sorted(set(row.items_applied) - set(committed.items_applied))
    if missing:
        return f"the manifest lists items the store never committed: {', '.join(missing)}"
    return ""


def repair(data_dir: DataLocation, verdict: CubeVerdict) -> int:
    """Record unbacked chunks as the store has them (partial), so the next load fetches the rest;
    returns rows written."""
    cube = Cube.open(data_dir, verdict.product)
    grid = ChunkGrid(verdict.product)
    manifest = Manifest(cube.paths.manifest, grid)
    fixable = [p.chunk for p in verdict.problems if p.repairable]
    if not fixable:
        return 0
    with cube.commit_lock():
        committed = {r.chunk: r for r in records_from_history(cube)}
        now = utc_now()
        records = []
        for chunk in fixable:
            base = committed.get(chunk) or ChunkRecord(chunk, "partial", (), (), 0.0, now, None)
            records.append(replace(base, status="partial", checked_at=now,
                                   note="marked partial by verify: the manifest promised pixels the store lacks"))
        manifest.append(records)
    return len(records)


def verify_all(data_dir: DataLocation, progress: Callable[[Product], Progress | None] | None = None
               ) -> list[CubeVerdict]:
    """Verify every cube in a data directory."""
    return [verify_cube(data_dir, p, progress(p) if progress else None) for p in present_products(data_dir)]
