"""The bounded pipeline and the batching of chunks into download/commit tasks."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

import pytest

from darts_aux.fill import ChunkJob
from darts_aux.flows.tasks import MAX_CHUNKS_PER_TASK, batch_label, batches, chunks_per_task
from darts_aux.grid import ChunkId
from darts_aux.pipeline import run_bounded
from darts_aux.settings import Settings


def _jobs(n: int) -> list[ChunkJob]:
    return [ChunkJob(ChunkId(i // 10, i % 10), (), ()) for i in range(n)]


def test_the_pipeline_keeps_at_most_limit_running_and_finishes_each_as_it_is_done() -> None:
    running, peak, lock = 0, 0, threading.Lock()
    finished: list[int] = []

    def work(job: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02 if job % 3 else 0.06)  # every third job is slow: others overtake it
        with lock:
            running -= 1
        return job * 10

    def finish(job: int, future: Future[int]) -> None:
        assert future.result() == job * 10
        finished.append(job)

    with ThreadPoolExecutor(8) as pool:
        run_bounded(range(12), lambda job: pool.submit(work, job), lambda fs: next(as_completed(fs)), finish, 3)
    assert sorted(finished) == list(range(12))
    assert finished != list(range(12)), "jobs are finished in the order they complete, not the order started"
    assert peak == 3


def test_the_pipeline_starts_the_next_job_only_after_finishing_one() -> None:
    """Commits (finish) run before the next download starts: results never pile up beyond the limit."""
    events: list[str] = []
    with ThreadPoolExecutor(4) as pool:
        def start(job: int) -> Future[int]:
            events.append(f"start {job}")
            return pool.submit(lambda: job)

        run_bounded(range(4), start, lambda fs: next(as_completed(fs)),
                    lambda job, _: events.append(f"finish {job}"), 2)
    assert events[:2] == ["start 0", "start 1"]
    for index, event in enumerate(events):
        if event.startswith("start") and index >= 2:
            started = sum(e.startswith("start") for e in events[:index])
            assert sum(e.startswith("finish") for e in events[:index]) == started - 1


def test_an_error_in_finish_propagates() -> None:
    def finish(job: int, _: Future[int]) -> None:
        raise ValueError(f"commit of {job} failed")

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="commit of"):
        run_bounded(range(3), lambda job: pool.submit(lambda: job), lambda fs: next(as_completed(fs)), finish, 2)


@pytest.mark.parametrize(("jobs", "workers", "expected"), [
    (1, 4, 1), (16, 4, 1), (17, 4, 2), (200, 4, 13), (2000, 4, MAX_CHUNKS_PER_TASK), (16, 2, 2), (0, 4, 1),
])
def test_automatic_batches_are_single_chunks_for_small_fills_and_grow_with_the_fill(
        jobs: int, workers: int, expected: int) -> None:
    assert chunks_per_task(Settings(download_workers=workers), jobs) == expected


def test_dask_batches_follow_the_dask_workers_and_the_setting_wins() -> None:
    assert chunks_per_task(Settings(task_runner="dask", dask_workers=2), 16) == 2
    assert chunks_per_task(Settings(task_runner="dask", dask_workers=16), 16) == 1
    assert chunks_per_task(Settings(chunks_per_task=5), 3) == 5


def test_batches_cover_every_job_once_in_order_and_are_named_by_their_first_chunk() -> None:
    jobs = _jobs(23)
    cut = batches(jobs, 5)
    assert [len(b) for b in cut] == [5, 5, 5, 5, 3]
    assert [job for batch in cut for job in batch] == jobs
    assert batch_label(cut[0]) == f"{jobs[0].chunk}+4"
    assert batch_label(cut[-1][:1]) == str(jobs[20].chunk)
