"""A bounded pipeline: a few jobs running at once, each handed on as soon as it is done, the next one started."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

J = TypeVar("J")
F = TypeVar("F", bound=Hashable)


def run_bounded(jobs: Iterable[J], start: Callable[[J], F], first_done: Callable[[list[F]], F],
                finish: Callable[[J, F], None], limit: int) -> None:
    """Start up to `limit` jobs; whenever one is done, `finish` it (e.g. commit it) and start the next.

    Keeping few jobs in flight bounds the memory their results hold, and lets `finish` (the commits) run
    while later jobs (downloads) are still going, instead of after all of them.
    """
    waiting, running = deque(jobs), {}
    while waiting or running:
        while waiting and len(running) < max(1, limit):
            job = waiting.popleft()
            running[start(job)] = job
        done = first_done(list(running))
        finish(running.pop(done), done)
