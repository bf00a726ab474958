"""The deployments of darts-aux, and `serve_all` to serve them from one process against a Prefect server.

`deployments/prefect.yaml` declares the same deployments for `prefect deploy` (work pool + worker); a test keeps
the two in step. Run `python -m darts_aux.flows.deployments [--data-dir DIR]` (or `darts-aux serve`) to serve them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darts_aux.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

PREFECT_YAML = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"
"""Where the repository keeps the same deployments for `prefect deploy` (absent in a wheel install)."""
TIMEZONE = "UTC"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: its name, the flow (module-path entrypoint), parameters and optional cron schedule."""

    name: str
    entrypoint: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    tags: tuple[str, ...] = ("darts-aux",)

    def load_flow(self) -> Flow[..., Any]:
        """The flow object the entrypoint names."""
        from prefect.flows import load_flow_from_entrypoint

        return load_flow_from_entrypoint(self.entrypoint, use_placeholder_flow=False)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "revisit-partial-chunks", "darts_aux.flows.revisit.revisit_partial_chunks",
        "Daily: search the catalog again for every partial chunk of every cube and merge what arrived.",
        {}, cron="0 3 * * *", tags=("darts-aux", "maintenance"),
    ),
    DeploymentSpec(
        "prefetch-regions", "darts_aux.flows.prefetch.prefetch_regions",
        "Weekly: fill ArcticDEM (2/10/32 m) and TCVIS for the regions of a GeoJSON/GeoParquet file "
        "(default <data_dir>/regions.geojson), so processing campaigns never wait for downloads.",
        {"arcticdem_resolutions": [2, 10, 32], "tcvis": True}, cron="0 4 * * 1", tags=("darts-aux", "prefetch"),
    ),
    DeploymentSpec(
        "fill-arcticdem", "darts_aux.flows.arcticdem.fill_arcticdem",
        "Ad hoc: fill an ArcticDEM cube over a region: bounds (+ crs, default EPSG:3413) or a GeoJSON geometry.",
        {"resolution": 32}, tags=("darts-aux", "arcticdem"),
    ),
    DeploymentSpec(
        "fill-tcvis", "darts_aux.flows.tcvis.fill_tcvis",
        "Ad hoc: fill the TCVIS cube over a region: bounds (+ crs, default EPSG:4326) or a GeoJSON geometry.",
        {}, tags=("darts-aux", "tcvis"),
    ),
    DeploymentSpec(
        "fill-alphaearth", "darts_aux.flows.alphaearth.fill_alphaearth",
        "Ad hoc: fill the AlphaEarth embeddings over a region for some years (default all): bounds (+ crs, default "
        "EPSG:3413) or a GeoJSON geometry.",
        {}, tags=("darts-aux", "alphaearth"),
    ),
    DeploymentSpec(
        "compact-manifest", "darts_aux.flows.compact.compact_manifest",
        "Weekly: fold every cube's manifest segments into one file.",
        {}, cron="0 5 * * 0", tags=("darts-aux", "maintenance"),
    ),
)


def deployment_spec(name: str) -> DeploymentSpec:
    """The deployment called `name`."""
    return next(spec for spec in DEPLOYMENTS if spec.name == name)


def runner_deployments(data_dir: str | Path | None = None) -> list[RunnerDeployment]:
    """Every deployment as a RunnerDeployment for `prefect.serve`; `data_dir` becomes every run's data_dir."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    deployments = []
    for spec in DEPLOYMENTS:
        parameters = dict(spec.parameters)
        if data_dir is not None:
            parameters["data_dir"] = str(Path(data_dir).expanduser())
        deployments.append(_built(spec.load_flow().to_deployment(
            name=spec.name,
            description=spec.description,
            parameters=parameters,
            schedules=[Cron(spec.cron, timezone=TIMEZONE)] if spec.cron else None,
            tags=list(spec.tags),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )))
    return deployments


def _built(deployment: RunnerDeployment | Coroutine[Any, Any, RunnerDeployment]) -> RunnerDeployment:
    """What `Flow.to_deployment` built: a RunnerDeployment, or a coroutine when called in a running event loop."""
    if isinstance(deployment, Coroutine):
        deployment.close()
        raise ConfigurationError("the deployments are built outside a running event loop: call runner_deployments() "
                                 "from synchronous code, not from an async function or a notebook cell.")
    return deployment


def serve_all(data_dir: str | None = None) -> None:
    """Serve every deployment from this process until interrupted (flow runs start as subprocesses).

    Needs a Prefect server: PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after `prefect server start`).
    `data_dir` (default: DARTS_AUX_DATA_DIR in each run) is set as every deployment's data_dir parameter.
    Schedules are paused when serving stops.
    """
    from prefect import serve
    from prefect.settings import get_current_settings

    if not (os.environ.get("PREFECT_API_URL") or get_current_settings().api.url):
        raise ConfigurationError(
            "serving deployments needs a Prefect server: start one with `prefect server start` and set "
            "PREFECT_API_URL (e.g. `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`)."
        )
    serve(*runner_deployments(data_dir))


def main(argv: list[str] | None = None) -> None:
    """`python -m darts_aux.flows.deployments [--data-dir DIR]` (or `python -m flows.deployments` in the repository)."""
    parser = argparse.ArgumentParser(prog="python -m darts_aux.flows.deployments", description=serve_all.__doc__)
    parser.add_argument("--data-dir", default=None, help="data directory of every run (default: DARTS_AUX_DATA_DIR)")
    args = parser.parse_args(argv)
    serve_all(args.data_dir)


if __name__ == "__main__":
    main()
