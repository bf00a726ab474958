"""Prefect task options derived from darts-aux's one retry policy."""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from darts_aux.retry import RetryPolicy, is_transient


def retry_on_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry timeouts, 429, 5xx, resets and truncated reads; never bad input."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:  # noqa: BLE001 - the state's exception, classified
        return is_transient(error)
    return False


def retry_options(policy: RetryPolicy) -> dict[str, Any]:
    """Task options: as many retries as the policy, exponential delays, the same jitter, transient only."""
    return {
        "retries": policy.retries,
        "retry_delay_seconds": policy.delays() or 0,
        "retry_jitter_factor": policy.jitter,
        "retry_condition_fn": retry_on_transient,
    }
