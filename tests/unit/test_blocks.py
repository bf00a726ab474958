"""The block cache: each block read once by one thread, runs of adjacent blocks per read, bounded, errors not kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from darts_aux.sources.blocks import BlockCache, BlockGrid, BlockKey


def keys(row: int, cols: range, scope: str = "dir") -> list[BlockKey]:
    return [(scope, "http://host/a.tif", row, col) for col in cols]


class Reader:
    """Reads runs of blocks as arrays holding their column number, and logs every run it was asked for."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.runs: list[list[int]] = []
        self.delay, self.fail = delay, fail
        self.lock = threading.Lock()

    def __call__(self, run: list[BlockKey]) -> list[np.ndarray]:
        with self.lock:
            self.runs.append([k[3] for k in run])
        time.sleep(self.delay)
        if self.fail:
            raise OSError("connection reset")
        return [np.full((4, 4), k[3], np.float32) for k in run]


def test_missing_blocks_are_read_in_runs_of_adjacent_columns_and_kept() -> None:
    cache, reader = BlockCache(), Reader()
    cache.row(keys(0, range(2, 4)), reader)
    got = cache.row(keys(0, range(0, 7)), reader)
    assert reader.runs == [[2, 3], [0, 1], [4, 5, 6]]
    assert [int(got[k][0, 0]) for k in keys(0, range(0, 7))] == list(range(7))


def test_two_threads_needing_one_block_read_it_once() -> None:
    cache, reader = BlockCache(), Reader(delay=0.2)
    threads = [threading.Thread(target=cache.row, args=(keys(3, range(5, 8)), reader)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c for run in reader.runs for c in run) == [5, 6, 7]


def test_a_failed_read_keeps_nothing_and_a_waiting_thread_reads_for_itself() -> None:
    cache, failing = BlockCache(), Reader(delay=0.2, fail=True)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            cache.row(keys(0, range(0, 2)), failing)
        except OSError as error:
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.05)
    healthy = Reader()
    got = cache.row(keys(0, range(0, 2)), healthy)  # waits for the failing read, then reads itself
    thread.join()
    assert len(errors) == 1 and healthy.runs == [[0, 1]] and len(got) == 2


def test_scopes_do_not_share_and_the_cache_stays_within_its_bound() -> None:
    cache, reader = BlockCache(max_bytes=3 * 64), Reader()  # three 4×4 float32 blocks
    cache.row(keys(0, range(0, 3), "a"), reader)
    cache.row(keys(0, range(0, 3), "b"), reader)
    assert reader.runs == [[0, 1, 2], [0, 1, 2]]
    cache.row(keys(0, range(0, 1), "a"), reader)  # evicted by scope b's blocks
    assert reader.runs[-1] == [0]


def test_blocks_expire() -> None:
    cache, reader = BlockCache(ttl=0.05), Reader()
    cache.row(keys(0, range(0, 1)), reader)
    time.sleep(0.1)
    cache.row(keys(0, range(0, 1)), reader)
    assert reader.runs == [[0], [0]]


@pytest.mark.parametrize(("row", "first", "last", "window"), [
    (0, 0, 1, (0, 0, 1024, 512)),
    (49, 47, 49, (24064, 25088, 1036, 12)),  # the last row and column of a 25,100² px tile are cut short
])
def test_run_windows_are_cut_at_the_raster_edge(row: int, first: int, last: int,
                                                window: tuple[int, int, int, int]) -> None:
    grid = BlockGrid(25_100, 25_100, 512, 512)
    assert grid.run_window(row, first, last) == window
    assert list(grid.cols(24_000, 25_100)) == [46, 47, 48, 49]  # 49 · 512 = 25,088
