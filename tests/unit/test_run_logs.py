"""darts_aux's log lines go to the Prefect run logs only inside a run; elsewhere they stay local and silent."""

from __future__ import annotations

import logging
import warnings

from darts_aux.flows.logs import LIBRARY_LOGGER, RunLogHandler, forward_library_logs


def test_forwarding_is_installed_once_and_keeps_a_level_the_application_chose() -> None:
    logger = logging.getLogger(LIBRARY_LOGGER)
    before_handlers, before_level = list(logger.handlers), logger.level
    try:
        logger.setLevel(logging.WARNING)
        forward_library_logs()
        forward_library_logs()
        assert sum(isinstance(h, RunLogHandler) for h in logger.handlers) == 1
        assert logger.level == logging.WARNING
    finally:
        logger.handlers[:] = before_handlers
        logger.setLevel(before_level)


def test_a_line_logged_outside_any_run_is_not_sent_and_warns_nothing() -> None:
    handler = RunLogHandler()
    record = logging.LogRecord("darts_aux.fill", logging.INFO, __file__, 1, "chunk r1c1 committed", None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect warns when its handler gets a record without a run
        assert handler.filter(record) is False
        handler.handle(record)
