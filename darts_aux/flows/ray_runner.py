"""prefect-ray's task runner as the fill flows use it (DARTS_AUX_TASK_RUNNER=ray); imported only with the [ray] extra.

Each task runs in a Ray worker process, which reports its task run to the Prefect API of the flow's settings. A
flow on Prefect's temporary (ephemeral) server has no API a worker can reach: every worker would start a server of
its own on the same database, tens of seconds each. So the runner refuses to start without a configured API.

A local instance the runner starts itself runs its workers on this interpreter and reports no usage: unless the
environment says otherwise, Ray's usage stats are off (RAY_USAGE_STATS_ENABLED=0), and so is Ray's `uv run`
propagation (RAY_ENABLE_UV_RUN_RUNTIME_ENV=0), which would copy the whole working directory, virtual environment
included, into Ray's session folder and start every worker through `uv run` there.
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

LOCAL_INSTANCE_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
"""Ray's defaults a local instance of the runner's own changes (set before Ray is imported; an existing value wins)."""


class ServerBoundRayTaskRunner(RayTaskRunner):
    """RayTaskRunner that starts only with a Prefect API its workers can reach; a local instance of its own runs its
    workers on this interpreter and reports no usage."""

    def __enter__(self) -> Self:
        """Check the Prefect API, then start (or connect to) Ray as RayTaskRunner does."""
        if prefect_api_url() is None:
            raise ConfigurationError(NEEDS_SERVER)
        if self.address is None:
            for name, value in LOCAL_INSTANCE_ENV.items():
                os.environ.setdefault(name, value)
        entered: Self = super().__enter__()
        return entered
