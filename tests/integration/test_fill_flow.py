"""The Prefect flow itself: task runs named by chunk, one search per fill, retry policy, tile-index discovery."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, roi_window, window_bounds
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.retry import RetryPolicy
from darts_aux.store import cube_paths

from .conftest import formula_oracle, point_at

PRODUCT = arcticdem(32)
ROI = GeoBox.from_bbox((785_000, 3_130_000, 810_000, 3_155_000), "EPSG:3413", resolution=32)


def test_flow_run_has_one_discover_and_a_download_and_commit_per_chunk(
    use_catalog: LocalCatalog, via_prefect: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from darts_aux.flows.arcticdem import fill_arcticdem

    window = roi_window(ROI, PRODUCT.extent)
    chunks = ChunkGrid(PRODUCT).chunks(window)
    assert len(chunks) >= 2
    state = fill_arcticdem(32, window_bounds(PRODUCT.extent, window), str(tmp_path), return_state=True)
    report = state.result()
    assert report.chunks_fetched == len(chunks)
    searches = [r for r in use_catalog.requests("stac") if r["path"].rstrip("/").endswith("/search")]
    assert len(searches) == 1, "discovery makes one item search per fill"
    expected = sorted(["discover-arcticdem-32m"] + [f"download-{c}" for c in chunks] + [f"commit-{c}" for c in chunks])
    deadline = time.monotonic() + 30  # task-run states reach the server as events, a little after the flow returns
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        done = len(runs) == len(expected) and all(run.state and run.state.is_completed() for run in runs)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(run.name for run in runs) == expected
    assert all(run.state.is_completed() for run in runs), [(run.name, run.state_name) for run in runs]
    # no concurrency limit on the server: download and commit task runs carry no tags (no slot request each)
    assert all(run.tags == [] for run in runs if run.name.startswith(("download-", "commit-")))
    rows = Manifest(cube_paths(tmp_path, PRODUCT).manifest, ChunkGrid(PRODUCT)).latest()
    assert sorted(rows) == sorted(chunks) == sorted(r.chunk for r in report.records)
    assert {rows[r.chunk] for r in report.records} == set(report.records)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.name == "arcticdem-32m 25×25 km"
    _assert_library_lines_in_the_run_logs(flow_run.id, chunks, {run.name: run.id for run in runs})


def _assert_library_lines_in_the_run_logs(flow_run_id: object, chunks: list, task_runs: dict) -> None:
    """darts_aux's own lines reach the flow run's logs (the UI), each under the task run that logged it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + 30  # the API log worker sends in batches
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
        ours = [log for log in logs if log.name.startswith("darts_aux")]
        committed = {log.task_run_id for log in ours if " committed: " in log.message}
        if len(committed) == len(chunks) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(log.name == "darts_aux.fill" and " in the ROI, " in log.message and log.task_run_id
               == task_runs["discover-arcticdem-32m"] for log in ours), [log.message for log in ours]
    assert committed == {task_runs[f"commit-{chunk}"] for chunk in chunks}, [
        log.message for log in ours if "commit" in log.message]
    assert any("fill: " in log.message and log.task_run_id is None for log in ours), "the flow's closing line"


def test_tasks_carry_the_retry_policy() -> None:
    from prefect.states import Completed, Failed

    from darts_aux.flows.policy import retry_on_transient, retry_options
    from darts_aux.flows.tasks import discover_task

    policy = RetryPolicy(retries=4, base_delay=0.5, jitter=0.3)
    configured = discover_task.with_options(**retry_options(policy))
    assert configured.retries == 4 and configured.retry_delay_seconds == [0.5, 1.0, 2.0, 4.0]
    assert configured.retry_jitter_factor == 0.3
    assert retry_on_transient(configured, None, Failed(data=TimeoutError("read timed out")))  # type: ignore[arg-type]
    assert not retry_on_transient(configured, None, Failed(data=ValueError("bad input")))  # type: ignore[arg-type]
    assert not retry_on_transient(configured, None, Completed(data=1))  # type: ignore[arg-type]


def test_tile_index_discovery_reads_the_index_once(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, inline: None, tmp_path: Path
) -> None:
    point_at(catalog, monkeypatch, discovery="tile-index", tile_index_url=catalog.tile_index_url)
    ds = load_arcticdem(ROI, tmp_path, 32)
    window = roi_window(ROI, PRODUCT.extent)
    dem, mask = formula_oracle(catalog, 32, window)
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)
    assert catalog.requests("stac") == []
    index_fetches = [r for r in catalog.requests("files") if r["path"].endswith(".zip")]
    assert len(index_fetches) == 1 and (tmp_path / "tile-index" / ".complete").exists()

    catalog.reset_log()
    elsewhere = GeoBox.from_bbox((520_000, 3_020_000, 540_000, 3_040_000), "EPSG:3413", resolution=32)
    load_arcticdem(elsewhere, tmp_path, 32)
    assert [r for r in catalog.requests("files") if r["path"].endswith(".zip")] == []
    assert [r for r in catalog.requests("files") if r["path"].endswith(".json")], "item JSON is fetched per tile"
