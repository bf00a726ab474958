"""What a fill of a region would do, told before it starts: chunks, how many are full, bytes it would read.

The chunk grid starts at the cube's corner, which is the 100 km tile grid plus the tiles' buffer (100 m; 96 m
at 32 m), so chunk edges are never on round coordinates: a 320 km box from x = 0 touches three 160 km chunks
per axis, not two. The plan says so, so that an operator sees the cost before paying for it. Reading a plan
reads the manifest only: no source is asked and nothing is written.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from .grid import ChunkGrid, ChunkId, PixelWindow, window_bounds
from .location import DataLocation
from .manifest import Manifest, utc_now
from .products import Product
from .store import cube_exists, cube_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FillPlan:
    """The chunks a region touches and what the manifest knows of them, before any download."""

    product: Product
    window: PixelWindow
    chunks: tuple[ChunkId, ...]
    full: tuple[ChunkId, ...]
    """Chunks complete in the cube: a fill reuses them."""
    partial: tuple[ChunkId, ...]
    """Chunks with some pixels: a fill searches them again for new tiles."""
    settled: bool
    """True when no fill starts: every chunk is full, or partial and checked within the revisit interval."""

    @property
    def missing(self) -> tuple[ChunkId, ...]:
        """Chunks the manifest has no row for: never fetched."""
        known = set(self.full) | set(self.partial)
        return tuple(c for c in self.chunks if c not in known)

    @property
    def to_search(self) -> tuple[ChunkId, ...]:
        """Chunks a fill would search for tiles (none when the region is settled)."""
        return () if self.settled else tuple(c for c in self.chunks if c not in set(self.full))

    @property
    def estimated_bytes(self) -> int:
        """Pixel bytes a fill would read, estimated as each searched chunk read once, uncompressed.

        Fill reports count bytes the same way (pixels read × bytes per pixel); a real fill reads a little more
        where tiles overlap (their buffers) and less where tiles leave gaps.
        """
        grid = ChunkGrid(self.product)
        pixels = sum(math.prod(grid.window(chunk).shape) for chunk in self.to_search)
        return pixels * self.product.bytes_per_pixel

    @property
    def chunk_rows(self) -> int:
        """How many rows of chunks the region touches."""
        return len({chunk.row for chunk in self.chunks})

    @property
    def chunk_cols(self) -> int:
        """How many columns of chunks the region touches."""
        return len({chunk.col for chunk in self.chunks})

    @property
    def fewest_chunks(self) -> int:
        """How many chunks a region of this size touches at the least, were it aligned with the chunk grid."""
        rows, cols = self.window.shape
        n = self.product.fill_chunk
        return math.ceil(rows / n) * math.ceil(cols / n)

    def summary(self) -> str:
        """One line: chunks, how many are full and partial, and what a fill would read."""
        head = (f"plan for {self.product.key}: {_count(len(self.chunks), 'chunk')} over the region "
                f"({self.chunk_rows} × {self.chunk_cols}), {len(self.full):,} full, {len(self.partial):,} partial, "
                f"{len(self.missing):,} not fetched yet")
        if self.settled:
            return f"{head}; nothing to fetch (every chunk is full or was checked recently)"
        return f"{head}; a fill searches {_count(len(self.to_search), 'chunk')} and reads about {_megabytes(self)}"

    def grid_note(self) -> str | None:
        """Why the region touches more chunks than its size needs (the grid's offset), or None when it does not."""
        if len(self.chunks) <= self.fewest_chunks:
            return None
        extent = self.product.extent
        size = self.product.fill_chunk * extent.resolution
        unit = "°" if extent.wrap_x else " m"
        return (f"a region of this size fits in {_count(self.fewest_chunks, 'chunk')}, but this one touches "
                f"{len(self.chunks):,}: chunk edges lie at x = {_number(_nearest_edge(extent.x0, size), unit)} "
                f"+ k × {_number(size, unit)} and y = {_number(_nearest_edge(extent.y0, size), unit)} + k × "
                f"{_number(size, unit)}, because the chunk grid starts at the cube's corner (x = "
                f"{_number(extent.x0, unit)}, y = {_number(extent.y0, unit)}), not at round coordinates")

    def chunk_bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the chunks the region touches, in the cube's CRS."""
        return window_bounds(self.product.extent, ChunkGrid(self.product).covering(list(self.chunks)))


def fill_plan(data_dir: DataLocation, product: Product, window: PixelWindow, revisit_seconds: float,
              now: datetime | None = None) -> FillPlan:
    """The plan of a fill of `window`: read from the manifest only (a data dir that does not exist is empty)."""
    grid = ChunkGrid(product)
    chunks = tuple(grid.chunks(window))
    latest = Manifest(cube_paths(data_dir, product).manifest, grid).latest(window) \
        if cube_exists(data_dir, product) else {}
    full = tuple(c for c in chunks if c in latest and latest[c].status == "full")
    partial = tuple(c for c in chunks if c in latest and latest[c].status != "full")
    when = now or utc_now()
    settled = all(c in latest and latest[c].is_settled(when, revisit_seconds) for c in chunks)
    return FillPlan(product, window, chunks, full, partial, settled)


def log_fill_plan(data_dir: DataLocation, product: Product, window: PixelWindow, revisit_seconds: float) -> FillPlan:
    """Log the plan of a fill as it starts (one line, plus the grid's offset when it costs chunks)."""
    plan = fill_plan(data_dir, product, window, revisit_seconds)
    note = plan.grid_note()
    log.info("%s%s", plan.summary(), f"; {note}" if note else "")
    return plan


def _nearest_edge(origin: float, size: float) -> float:
    """The chunk edge nearest to coordinate 0 on an axis whose edges are `origin + k × size`."""
    offset = math.fmod(origin, size)
    return offset - size if offset > size / 2 else offset + size if offset < -size / 2 else offset


def _number(value: float, unit: str) -> str:
    """A coordinate as a plain number: metres to the metre with thousands separators, degrees to 1e-6."""
    if unit == "°":
        return f"{value:,.6f}°"
    return f"{value:,.0f}{unit}"


def _megabytes(plan: FillPlan) -> str:
    return f"{plan.estimated_bytes / 1e6:,.1f} MB of pixels"


def _count(n: int, noun: str) -> str:
    """'1 chunk', '9 chunks': a count with its noun in agreement."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"
