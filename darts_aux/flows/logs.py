"""darts_aux's own log lines (chunks read, committed, waited for) in the Prefect run logs, beside Prefect's."""

from __future__ import annotations

import logging

from prefect.logging.handlers import APILogHandler

LIBRARY_LOGGER = "darts_aux"


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, for records logged inside a flow or task run only (the rest stay local)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import get_run_context
        from prefect.exceptions import MissingContextError

        try:
            get_run_context()
        except MissingContextError:
            return False
        return bool(super().filter(record))


def forward_library_logs(level: int = logging.INFO) -> None:
    """Send darts_aux's records of `level` and above that are logged in a run to that run's logs (once per process).

    The library logger gets `level` only if nobody set one, so a level chosen by the application stays.
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    if not any(isinstance(handler, RunLogHandler) for handler in logger.handlers):
        logger.addHandler(RunLogHandler(level=level))
    if logger.level == logging.NOTSET:
        logger.setLevel(level)
