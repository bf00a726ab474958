"""The task runner of the fill flows, chosen by DARTS_AUX_TASK_RUNNER: a thread pool, Dask or Ray."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from prefect import Flow
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from darts_aux.extras import require_extras
from darts_aux.settings import Settings

R = TypeVar("R")


def run_named(flow: Flow[..., R], parameters: Mapping[str, Any], name: str) -> R:
    """Run `flow` in this process as a flow run created under its final `name`; returns or raises what it does.

    A flow called directly is created under a random name and renamed when it starts, so the UI and the event
    feed first show the random one; the runs darts-aux starts itself carry their name from the start.
    """
    from prefect.flow_engine import run_flow_sync

    result = run_flow_sync(flow, flow_run=create_named_run(flow, parameters, name), parameters=dict(parameters))
    return cast(R, result)  # return_type "result": the flow's own return value (a failed run raises instead)


def create_named_run(flow: Flow[..., Any], parameters: Mapping[str, Any], name: str) -> Any:
    """A Pending flow run of `flow` on the configured Prefect API, created under `name`."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    with get_client(sync_client=True) as client:
        return client.create_flow_run(flow, name=name, parameters=flow.serialize_parameters(dict(parameters)),
                                      state=Pending())


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
    require_extras("DARTS_AUX_TASK_RUNNER=dask", "dask")
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": settings.dask_workers, "processes": True, "threads_per_worker": 1,
                        "dashboard_address": None},
    )


def ray_runner(settings: Settings) -> TaskRunner:
    """prefect-ray's runner: the Ray cluster at DARTS_AUX_RAY_ADDRESS, else a local Ray instance.

    A local instance has DARTS_AUX_RAY_WORKERS CPUs (each task takes one, so as many tasks run at once) and no
    dashboard, lives as long as the flow run, and its workers run this interpreter: they import the same darts-aux.
    'auto' joins the cluster this machine was started into and fails when there is none (never starts one). In a
    process already connected to Ray (ray.init), the runner uses that connection. The runner refuses to start
    without a running Prefect server (see darts_aux.flows.ray_runner).
    """
    require_extras("DARTS_AUX_TASK_RUNNER=ray", "ray")
    from .ray_runner import ServerBoundRayTaskRunner

    if settings.ray_address == "auto":
        return ServerBoundRayTaskRunner(address="auto", init_kwargs={"address": "auto"})
    if settings.ray_address:
        return ServerBoundRayTaskRunner(address=settings.ray_address)
    return ServerBoundRayTaskRunner(init_kwargs={"num_cpus": settings.ray_workers, "include_dashboard": False})


def fill_task_runner(settings: Settings) -> TaskRunner[PrefectFuture[Any]]:
    """The runner the settings ask for: 'threads' (download_workers threads), 'dask' or 'ray'.

    Typed as the flow decorator takes it: every runner's futures are PrefectFutures, but TaskRunner's type parameter
    is invariant, so the runner is cast to the general type (as Prefect's own Flow does).
    """
    if settings.task_runner == "dask":
        runner = dask_runner(settings)
    elif settings.task_runner == "ray":
        runner = ray_runner(settings)
    else:
        runner = thread_runner(settings.download_workers)
    return cast(TaskRunner[PrefectFuture[Any]], runner)


def task_slots(settings: Settings) -> int:
    """How many download tasks a fill keeps running at once: the thread pool's downloads, or the Dask or Ray workers."""
    slots = {"dask": settings.dask_workers, "ray": settings.ray_workers}
    return slots.get(settings.task_runner, settings.download_workers)
