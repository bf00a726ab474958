"""How a flow run ends on the caller's mistake: Failed, with darts-aux's one-line message as the state message and
one log line, no traceback. Unexpected errors still raise (and Prefect logs them with their traceback).

A flow returns `failed(error)` for a user error. Prefect keeps the error as the state's result, so an in-process
caller (`load_*` through the flow) gets the same typed exception raised back; a deployment run shows the message
in the UI and in `prefect deployment run --watch`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prefect.states import Failed, State

from darts_aux.errors import ConfigurationError, DartsAuxError, InvalidRequestError

if TYPE_CHECKING:
    from darts_aux.fill import FillReport

USER_ERRORS: tuple[type[DartsAuxError], ...] = (InvalidRequestError, ConfigurationError)
"""Mistakes in what the run was given (parameters, settings, data directory): told in one line, not a traceback."""
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.engine")
"""Where Prefect logs a run's final exception again, with its traceback, when the run executes in its own process."""


def is_user_error(error: BaseException | None) -> bool:
    """Whether an error is the caller's mistake, already told by `failed`."""
    return isinstance(error, USER_ERRORS)


def failed(error: DartsAuxError) -> State:
    """The Failed state of a run stopped by a user error: its message, one log line, the error kept as the result."""
    from prefect import get_run_logger

    quiet_user_error_tracebacks()
    get_run_logger().error("%s", error)
    return Failed(message=str(error), data=error)


def fill_report(outcome: FillReport | State) -> FillReport:
    """What a fill flow called in-process returned: its report (a run that ends Failed raises its error instead)."""
    if isinstance(outcome, State):
        raise RuntimeError(f"the fill flow run ended {outcome.name} without raising its error")
    return outcome


class UserErrorTracebacks(logging.Filter):
    """Drops Prefect's engine records that repeat a user error with its traceback (the run told it in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not is_user_error(error)


def quiet_user_error_tracebacks() -> None:
    """Install `UserErrorTracebacks` on Prefect's run and engine loggers (once per process)."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorTracebacks) for f in logger.filters):
            logger.addFilter(UserErrorTracebacks())
