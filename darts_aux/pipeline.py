"""Bounded pipelines: a few jobs running at once, each handed on as soon as it is done; workers taking what waits."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from contextlib import suppress
from typing import Generic, TypeVar

J = TypeVar("J")
F = TypeVar("F", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


def run_bounded(jobs: Iterable[J], start: Callable[[J], F], first_done: Callable[[list[F]], F],
                finish: Callable[[J, F], None], limit: int) -> None:
    """Start up to `limit` jobs; whenever one is done, `finish` it (e.g. commit it) and start the next.

    Keeping few jobs in flight bounds the memory their results hold, and lets `finish` (the commits) run
    while later jobs (downloads) are still going, instead of after all of them.
    """
    waiting = deque(jobs)
    running: dict[F, J] = {}
    while waiting or running:
        while waiting and len(running) < max(1, limit):
            job = waiting.popleft()
            running[start(job)] = job
        done = first_done(list(running))
        finish(running.pop(done), done)


class GroupingWorkers(Generic[T, R]):
    """Worker threads that each take every item waiting (up to `max_group`) and handle them together.

    Used for commits: a commit's fixed cost (icechunk's rebase and ref write, the manifest row, the lock)
    is paid once for all the chunks that arrived while the previous commit ran. `put` blocks while
    `max_waiting` items wait, so the producers' results (downloaded pixels) stay bounded in memory.
    A worker lets the oldest item wait up to `linger` seconds for a full group (items finishing together, like
    a wave of downloads, then go in one commit), and none once the producer is done.
    The first error stops the workers and is raised by the next `put` or by `close`.
    """

    def __init__(self, handle: Callable[[list[T]], list[R]], threads: int, max_group: int, max_waiting: int,
                 linger: float = 0.0, name: str = "worker") -> None:
        self._handle, self._max_group, self._max_waiting = handle, max(1, max_group), max(1, max_waiting)
        self._linger = linger
        self._ready = threading.Condition()
        self._waiting: deque[T] = deque()
        self._since: deque[float] = deque()
        self._results: list[R] = []
        self._error: BaseException | None = None
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> GroupingWorkers[T, R]:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if error is not None:  # the producer failed: queued items are still handled, its error is the one raised
            with suppress(Exception):
                self.close()

    def put(self, item: T) -> None:
        """Queue one item, waiting while `max_waiting` are queued; raises a worker's error."""
        with self._ready:
            while len(self._waiting) >= self._max_waiting and self._error is None:
                self._ready.wait()
            if self._error is not None:
                raise self._error
            self._waiting.append(item)
            self._since.append(time.monotonic())
            self._ready.notify_all()

    def close(self) -> list[R]:
        """Let the workers handle what is queued, wait for them; every result, or the first error raised."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error
        return self._results

    def _wait_for_group(self) -> float:
        """Seconds a worker should still wait before taking a group (0: take now; inf: nothing is waiting)."""
        if not self._waiting:
            return float("inf")
        if self._closed or len(self._waiting) >= min(self._max_group, self._max_waiting):
            return 0.0
        return self._linger - (time.monotonic() - self._since[0])

    def _work(self) -> None:
        while True:
            with self._ready:
                while self._error is None and not (self._closed and not self._waiting):
                    wait = self._wait_for_group()
                    if wait <= 0:
                        break
                    self._ready.wait(None if wait == float("inf") else wait)
                if self._error is not None or not self._waiting:
                    return
                taken = min(self._max_group, len(self._waiting))
                group = [self._waiting.popleft() for _ in range(taken)]
                for _ in range(taken):
                    self._since.popleft()
                self._ready.notify_all()
            try:
                results = self._handle(group)
            except BaseException as error:  # noqa: BLE001 - handed to the producer by put/close
                with self._ready:
                    self._error = self._error or error
                    self._ready.notify_all()
                return
            with self._ready:
                self._results.extend(results)
