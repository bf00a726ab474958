"""The task runner of the fill flows, chosen by DARTS_AUX_TASK_RUNNER: a thread pool or Dask."""

from __future__ import annotations

from typing import Any, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from darts_aux.settings import Settings


def thread_runner(workers: int) -> ThreadPoolTaskRunner:
    """The default task runner: a thread pool (downloads are I/O-bound and release the GIL).

    One thread more than `workers` downloads: the fill keeps `workers` download tasks running, and a
    batch's commit starts at once beside them.
    """
    return ThreadPoolTaskRunner(max_workers=workers + 1)


def dask_runner(settings: Settings) -> TaskRunner:
    """prefect-dask's runner: the scheduler at DARTS_AUX_DASK_ADDRESS, else a local cluster of worker processes.

    Each worker runs one task at a time (downloads hold a whole chunk in memory); a local cluster has
    DARTS_AUX_DASK_WORKERS processes and lives as long as the flow run.
    """
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": settings.dask_workers, "processes": True, "threads_per_worker": 1,
                        "dashboard_address": None},
    )


def fill_task_runner(settings: Settings) -> TaskRunner[PrefectFuture[Any]]:
    """The runner the settings ask for: 'threads' (download_workers threads) or 'dask'.

    Typed as the flow decorator takes it: both runners' futures are PrefectFutures, but TaskRunner's type parameter
    is invariant, so the runner is cast to the general type (as Prefect's own Flow does).
    """
    runner = dask_runner(settings) if settings.task_runner == "dask" else thread_runner(settings.download_workers)
    return cast(TaskRunner[PrefectFuture[Any]], runner)


def task_slots(settings: Settings) -> int:
    """How many download tasks a fill keeps running at once: the thread pool's downloads, or the Dask workers."""
    return settings.dask_workers if settings.task_runner == "dask" else settings.download_workers
