"""Flow runs darts-aux starts itself are created under their final name (not a random one renamed at start)."""

from __future__ import annotations

from pathlib import Path

from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.flows.arcticdem import fill_arcticdem, name_for
from darts_aux.flows.runners import create_named_run
from darts_aux.local import LocalCatalog

BOUNDS = [650_000.0, 3_150_000.0, 690_000.0, 3_190_000.0]


def _read_run(run_id: object) -> object:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)  # type: ignore[arg-type]


def test_a_run_is_created_under_the_name_its_parameters_give(forget_new_flow_runs: None, tmp_path: Path) -> None:
    params = {"resolution": 32, "bounds": BOUNDS, "data_dir": str(tmp_path)}
    created = create_named_run(fill_arcticdem, params, name_for(params))
    stored = _read_run(created.id)
    assert stored.name == "arcticdem-32m 40×40 km"  # type: ignore[attr-defined]
    assert stored.state.is_pending()  # type: ignore[attr-defined]
    assert stored.parameters == params  # type: ignore[attr-defined]


def test_a_load_through_prefect_names_its_fill_run_from_the_start(use_catalog: LocalCatalog,
                                                                  forget_new_flow_runs: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    only_fill = FlowFilter(name=FlowFilterName(any_=["fill_arcticdem"]))
    with get_client(sync_client=True) as client:
        before = {run.id for run in client.read_flow_runs(flow_filter=only_fill)}
    ds = load_arcticdem(GeoBox.from_bbox(tuple(BOUNDS), "EPSG:3413", resolution=32), tmp_path, 32)
    assert int(ds.datamask.values.sum()) > 0
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_filter=only_fill) if r.id not in before]
    assert [r.name for r in runs] == ["arcticdem-32m 40×40 km"]
    assert runs[0].state.is_completed()
