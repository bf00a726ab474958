"""Decoded COG blocks kept for a short while, so that neighbouring chunks read each block of a tile once.

A cube chunk (1000² px) and a COG block (512² px) do not line up: two chunks side by side both need the column of
blocks their edge crosses. Read chunk by chunk without this cache, a 6 × 6-chunk region fetches about 1.9× the
bytes of its blocks; with it, each block is fetched once (`benchmarks/README.md`, "Fill unit").

Blocks are shared within one data directory only, so fills of separate caches never see each other's reads, and
they are dropped after `ttl` seconds or when the cache holds more than `max_bytes`. Only blocks read without error
are kept. When two threads need the same block, one reads it and the other waits for it (never two requests).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

BlockKey = tuple[str, str, int, int]
"""(scope, href, block row, block column)."""
MAX_BYTES = 256 * 2**20
TTL_SECONDS = 120.0


@dataclass(frozen=True)
class BlockGrid:
    """How a COG's full-resolution band is cut into blocks."""

    height: int
    width: int
    block_height: int
    block_width: int

    def rows(self, row0: int, row1: int) -> range:
        """Block rows holding pixel rows [row0, row1)."""
        return range(row0 // self.block_height, (row1 - 1) // self.block_height + 1)

    def cols(self, col0: int, col1: int) -> range:
        """Block columns holding pixel columns [col0, col1)."""
        return range(col0 // self.block_width, (col1 - 1) // self.block_width + 1)

    def run_window(self, row: int, first_col: int, last_col: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) of blocks first_col…last_col of one block row, cut at the raster."""
        top, left = row * self.block_height, first_col * self.block_width
        bottom = min(self.height, top + self.block_height)
        right = min(self.width, (last_col + 1) * self.block_width)
        return left, top, right - left, bottom - top


class BlockCache:
    """A bounded, expiring map of decoded blocks with one reader per block at a time."""

    def __init__(self, max_bytes: int = MAX_BYTES, ttl: float = TTL_SECONDS) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._blocks: OrderedDict[BlockKey, np.ndarray] = OrderedDict()
        """Blocks, least recently used first (evicted first when over `max_bytes`)."""
        self._kept_at: OrderedDict[BlockKey, float] = OrderedDict()
        """When each block was kept, oldest first (expired from the front, so a claim never scans the cache)."""
        self._reading: dict[BlockKey, threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def row(self, keys: Sequence[BlockKey], read_run: Callable[[list[BlockKey]], list[np.ndarray]]
            ) -> dict[BlockKey, np.ndarray]:
        """The blocks of `keys` (one block row): cached ones as they are, the others read by `read_run`.

        `read_run` gets a run of adjacent missing keys and returns their blocks in order; what it raises is raised
        here, and other threads waiting for those blocks then read them themselves.
        """
        found: dict[BlockKey, np.ndarray] = {}
        while len(found) < len(keys):
            mine, theirs = self._claim([k for k in keys if k not in found], found)
            for run in _adjacent_runs(mine, keys):
                self._read(run, read_run, found)
            for event in theirs:
                event.wait()
        return found

    def _claim(self, wanted: list[BlockKey], found: dict[BlockKey, np.ndarray]
               ) -> tuple[list[BlockKey], list[threading.Event]]:
        """Take what is cached; claim what nobody reads; the events of blocks other threads are reading."""
        now = time.monotonic()
        mine, theirs = [], []
        with self._lock:
            self._expire(now)
            for key in wanted:
                if key in self._blocks:
                    self._blocks.move_to_end(key)
                    found[key] = self._blocks[key]
                elif key in self._reading:
                    theirs.append(self._reading[key])
                else:
                    self._reading[key] = threading.Event()
                    mine.append(key)
        return mine, theirs

    def _read(self, run: list[BlockKey], read_run: Callable[[list[BlockKey]], list[np.ndarray]],
              found: dict[BlockKey, np.ndarray]) -> None:
        """Read one run of claimed blocks; keep them (on success) and wake whoever waits for them."""
        try:
            blocks = read_run(run)
            found.update(zip(run, blocks, strict=True))
            self._keep(zip(run, blocks, strict=True))
        finally:
            with self._lock:
                for key in run:
                    self._reading.pop(key).set()

    def _keep(self, blocks: Iterable[tuple[BlockKey, np.ndarray]]) -> None:
        now = time.monotonic()
        with self._lock:
            for key, block in blocks:
                self._drop(key)
                self._blocks[key] = block
                self._kept_at[key] = now
                self._bytes += block.nbytes
            while self._bytes > self.max_bytes and self._blocks:
                self._drop(next(iter(self._blocks)))

    def _expire(self, now: float) -> None:
        """Drop blocks kept longer than the TTL ago (only those: the oldest are at the front)."""
        while self._kept_at:
            key, stamp = next(iter(self._kept_at.items()))
            if now - stamp <= self.ttl:
                return
            self._drop(key)

    def _drop(self, key: BlockKey) -> None:
        """Forget one block, if kept (the caller holds the lock)."""
        block = self._blocks.pop(key, None)
        self._kept_at.pop(key, None)
        if block is not None:
            self._bytes -= block.nbytes

    def clear(self) -> None:
        """Forget every block (those being read are kept by their readers only)."""
        with self._lock:
            self._blocks.clear()
            self._kept_at.clear()
            self._bytes = 0


def _adjacent_runs(claimed: list[BlockKey], order: Sequence[BlockKey]) -> list[list[BlockKey]]:
    """The claimed keys grouped into runs of adjacent columns (one range request each)."""
    mine = set(claimed)
    runs: list[list[BlockKey]] = []
    previous = False
    for key in order:
        if key in mine:
            if previous:
                runs[-1].append(key)
            else:
                runs.append([key])
        previous = key in mine
    return runs


SHARED = BlockCache()
"""The process's cache: every chunk read of this process uses it."""
