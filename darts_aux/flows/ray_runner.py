"""prefect-ray's task runner as the fill flows use it (DARTS_AUX_TASK_RUNNER=ray); imported only with the [ray] extra.

Each task runs in a Ray worker process, which reports its task run to the Prefect API of the flow's settings. A
flow on Prefect's temporary (ephemeral) server has no API a worker can reach: every worker would start a server of
its own on the same database, tens of seconds each. So the runner refuses to start without a configured API.
"""

from __future__ import annotations

import os
from typing import Self

from prefect_ray import RayTaskRunner

from darts_aux.errors import ConfigurationError
from darts_aux.orchestrator import prefect_api_url

NEEDS_SERVER = (
    "DARTS_AUX_TASK_RUNNER=ray needs a running Prefect server, and this flow runs on Prefect's temporary one, which "
    "Ray workers cannot reach: start one with 'prefect server start' and set PREFECT_API_URL, or use "
    "DARTS_AUX_TASK_RUNNER=threads."
)


class ServerBoundRayTaskRunner(RayTaskRunner):
    """RayTaskRunner that starts only with a Prefect API its workers can reach; a local instance reports no usage."""

    def __enter__(self) -> Self:
        """Check the Prefect API, then start (or connect to) Ray as RayTaskRunner does."""
        if prefect_api_url() is None:
            raise ConfigurationError(NEEDS_SERVER)
        if self.address is None:  # a local instance of our own: Ray's usage report stays off unless asked for
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        entered: Self = super().__enter__()
        return entered
