"""The `fill_alphaearth` flow: for each year asked for, discover → download tasks (Earth Engine) → commit tasks.

Each year is its own cube (`alphaearth-10m@2019`), so each gets its own chunk tasks, manifest rows and artifacts
(the chunk table, the summary with the coverage map and a quicklook of three embedding axes as RGB). A year that
fails keeps the others: every year is filled before the first error is raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from prefect import flow
from prefect.states import State
from pydantic import Field

from darts_aux.api import step_cubes
from darts_aux.fill import FillContext, FillReport
from darts_aux.location import as_location
from darts_aux.products import ALPHAEARTH_YEARS, alphaearth
from darts_aux.settings import get_settings
from darts_aux.wording import plural

from .artifacts import publish_fill_artifacts
from .failures import USER_ERRORS, failed
from .roi import Bounds, Buffer, Geometry, fill_window_of, run_name
from .runners import fill_task_runner
from .tasks import add_reports, fill_windows

Year = Annotated[int, Field(ge=ALPHAEARTH_YEARS[0], le=ALPHAEARTH_YEARS[1])]
"""A year of the collection, as Prefect validates a `years` parameter."""


def name_for(params: Mapping[str, Any]) -> str:
    """'alphaearth-10m 10×10 km, 2 years': the cube, the size of the window and how many years a run fills."""
    years = params.get("years")
    count = len(years) if years else len(alphaearth().time_steps)
    return f"{run_name(alphaearth, params)}, {plural(count, 'year')}"


def _flow_run_name() -> str:
    """The run's name from its parameters (Prefect's flow_run_name hook)."""
    from prefect.runtime import flow_run

    return name_for(flow_run.parameters)


@flow(name="fill_alphaearth", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def fill_alphaearth(bounds: Bounds | None = None, years: list[Year] | None = None, data_dir: str | None = None,
                    crs: str | None = None, geometry: Geometry | None = None,
                    buffer: Buffer = 0) -> FillReport | State:
    """Fill every AlphaEarth chunk touching a region, for each of `years` (default: every year 2017–2025).

    The region is `bounds` (left, bottom, right, top) in `crs` (default EPSG:3413), or a GeoJSON `geometry` (in
    `crs`, default EPSG:4326), padded by `buffer` cube pixels. A mistake in them ends the run Failed with a message
    saying what to change. Returns one report over all (chunk, year) pairs.
    """
    try:
        settings = get_settings()
        product = alphaearth()
        window = fill_window_of(product, bounds, crs, geometry, buffer)
        cubes = step_cubes(product, years or None)
    except USER_ERRORS as error:
        return failed(error)
    directory = as_location(data_dir or settings.data_dir)
    outcomes = []
    for cube in cubes:
        outcome = fill_windows(FillContext(cube, directory, settings), [(cube.step.label if cube.step else "", window)])
        publish_fill_artifacts(outcome)
        outcomes.append(outcome)
    for outcome in outcomes:
        outcome.raise_first_error()
    return add_reports(product.key, [outcome.report for outcome in outcomes])
