"""The block cache: one read per block across threads, expiry after the TTL, the byte bound, failures passed on."""

from __future__ import annotations

import threading
import time

import numpy as np

from darts_aux.sources.blocks import BlockCache, BlockKey


def _keys(row: int, cols: range, href: str = "a.tif") -> list[BlockKey]:
    return [("scope", href, row, col) for col in cols]


class Reader:
    """A `read_run` that records each run it is asked for and returns blocks holding their column number."""

    def __init__(self, delay: float = 0.0, nbytes: int = 64) -> None:
        self.runs: list[list[BlockKey]] = []
        self.delay = delay
        self.size = nbytes // 8
        self._lock = threading.Lock()

    def __call__(self, run: list[BlockKey]) -> list[np.ndarray]:
        with self._lock:
            self.runs.append(run)
        time.sleep(self.delay)
        return [np.full(self.size, key[3], dtype=np.float64) for key in run]


def test_missing_blocks_are_read_in_runs_of_adjacent_columns_and_then_kept() -> None:
    cache, reader = BlockCache(), Reader()
    assert sorted(k[3] for k in cache.row(_keys(0, range(2, 4)), reader)) == [2, 3]
    found = cache.row(_keys(0, range(0, 7)), reader)
    assert [[k[3] for k in run] for run in reader.runs] == [[2, 3], [0, 1], [4, 5, 6]]  # two runs around the kept
    assert all(found[key][0] == key[3] for key in _keys(0, range(0, 7)))
    cache.row(_keys(0, range(0, 7)), reader)
    assert len(reader.runs) == 3, "every block was kept"


def test_two_threads_wanting_the_same_blocks_read_them_once() -> None:
    cache, reader = BlockCache(), Reader(delay=0.2)
    results: list[dict[BlockKey, np.ndarray]] = []

    def want() -> None:
        results.append(cache.row(_keys(1, range(3)), reader))

    threads = [threading.Thread(target=want) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(run) for run in reader.runs) == 3
    assert all(sorted(k[3] for k in r) == [0, 1, 2] for r in results)


def test_blocks_expire_after_the_ttl_and_only_then() -> None:
    cache, reader = BlockCache(ttl=0.3), Reader()
    cache.row(_keys(0, range(2)), reader)
    time.sleep(0.15)
    cache.row(_keys(0, range(2, 4)), reader)
    cache.row(_keys(0, range(4)), reader)
    assert len(reader.runs) == 2, "nothing expired yet"
    time.sleep(0.2)  # columns 0-1 are 0.35 s old, 2-3 are 0.2 s old
    cache.row(_keys(0, range(4)), reader)
    assert [[k[3] for k in run] for run in reader.runs[2:]] == [[0, 1]]


def test_the_least_recently_used_blocks_go_first_past_the_byte_bound() -> None:
    cache, reader = BlockCache(max_bytes=3 * 64), Reader(nbytes=64)
    cache.row(_keys(0, range(3)), reader)
    cache.row(_keys(0, range(0, 1)), reader)  # column 0 used again: column 1 is now the least recently used
    cache.row(_keys(1, range(1)), reader)  # a fourth block: one must go
    cache.row(_keys(0, range(3)), reader)
    assert [[k[3] for k in run] for run in reader.runs[2:]] == [[1]]


def test_a_failed_read_is_raised_and_a_waiting_thread_reads_the_blocks_itself() -> None:
    cache = BlockCache()
    started, release = threading.Event(), threading.Event()

    def failing(run: list[BlockKey]) -> list[np.ndarray]:
        started.set()
        release.wait(5)
        raise OSError("connection reset")

    reader = Reader()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            cache.row(_keys(2, range(2)), failing)
        except OSError as error:
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(5)
    waiter_result: list[dict[BlockKey, np.ndarray]] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(cache.row(_keys(2, range(2)), reader)))
    waiter.start()
    time.sleep(0.1)
    assert reader.runs == [], "the second thread waits for the first one's read"
    release.set()
    thread.join()
    waiter.join()
    assert [str(e) for e in errors] == ["connection reset"]
    assert [[k[3] for k in run] for run in reader.runs] == [[0, 1]]
    assert sorted(k[3] for k in waiter_result[0]) == [0, 1]
