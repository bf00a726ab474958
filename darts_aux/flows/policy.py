"""Prefect task options derived from darts-aux's one retry policy.

A task's retries add no layer of their own: a failure the policy already retried inside the task (every request
of a search, every computePixels, every COG read) ends the task at once; only a transient failure that nothing
inside retried yet is retried by Prefect.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from darts_aux.retry import RetryPolicy, should_retry


def retry_on_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry timeouts, 429, 5xx, resets and truncated reads that no retry inside the task
    already went through; never bad input, never a source that stayed down through the policy's retries."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:  # noqa: BLE001 - the state's exception, classified
        return should_retry(error)
    return False


def retry_options(policy: RetryPolicy) -> dict[str, Any]:
    """Task options: as many retries as the policy, exponential delays, the same jitter, and only for transient
    failures that the policy inside the task did not retry already."""
    return {
        "retries": policy.retries,
        "retry_delay_seconds": policy.delays() or 0,
        "retry_jitter_factor": policy.jitter,
        "retry_condition_fn": retry_on_transient,
    }
