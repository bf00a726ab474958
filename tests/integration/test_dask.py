"""Fill flows on Dask: a LocalCluster of 2 worker processes sharing no disk (cube on S3), chunks on both, exact."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

import darts_aux.flows.arcticdem
import darts_aux.flows.tcvis  # noqa: F401 - takes the runner of the settings at import, and later tests share them
from darts_aux import load_tcvis
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.location import as_location
from darts_aux.manifest import Manifest
from darts_aux.products import TCVIS_PIXEL, tcvis
from darts_aux.settings import get_settings, reload_settings
from darts_aux.store import cube_paths

from ._s3 import S3Server, s3_data_dir, s3_server  # noqa: F401 - fixtures
from .test_tcvis import BANDS
from .test_tcvis import oracle as tcvis_oracle

# 16 TCVIS chunks in the grid's last column (834 px wide, next to 180°), 61.5–81° N: a fill of many small chunks.
ROI_16_CHUNKS = GeoBox.from_bbox((179.80, 61.5, 179.95, 81.0), "EPSG:4326", resolution=TCVIS_PIXEL)


def test_runner_setting_picks_threads_or_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from darts_aux.flows.runners import fill_task_runner

    assert isinstance(fill_task_runner(get_settings()), ThreadPoolTaskRunner)
    monkeypatch.setenv("DARTS_AUX_TASK_RUNNER", "dask")
    local = fill_task_runner(reload_settings())
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    monkeypatch.setenv("DARTS_AUX_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    remote = fill_task_runner(reload_settings())
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://127.0.0.1:8786"


def test_fill_on_two_dask_workers_is_exact_and_uses_both(use_earth_engine: LocalEarthEngine,
                                                         forget_new_flow_runs: None,
                                                         s3_server: S3Server, s3_data_dir: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    product = tcvis()
    grid = ChunkGrid(product)
    window = roi_window(ROI_16_CHUNKS, product.extent)
    chunks = grid.chunks(window)
    assert len(chunks) >= 16
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        monkeypatch.setenv("DARTS_AUX_TASK_RUNNER", "dask")
        monkeypatch.setenv("DARTS_AUX_DASK_ADDRESS", cluster.scheduler_address)
        reload_settings()
        with get_task_stream(client) as stream:
            ds = load_tcvis(ROI_16_CHUNKS, s3_data_dir)
        workers = {w: int(pid) for w, pid in client.run(lambda: __import__("os").getpid()).items()}

    ran = [(record["key"], record["worker"]) for record in stream.data]
    downloads = {worker for key, worker in ran if "download" in str(key)}
    commits = {worker for key, worker in ran if "commit" in str(key)}
    # chunks go to download/commit tasks in batches; every batch ran as one download and one commit task
    from darts_aux.flows.tasks import chunks_per_task

    tasks = -(-len(chunks) // chunks_per_task(get_settings(), len(chunks)))
    assert 1 < tasks < len(chunks)
    assert len([key for key, _ in ran if "download" in str(key)]) == tasks
    assert len([key for key, _ in ran if "commit" in str(key)]) == tasks
    assert downloads == commits == set(workers), f"chunks must be processed on both workers: {ran}"

    expected = tcvis_oracle(product, window)
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values, expected[name], err_msg=name)
    rows = Manifest(cube_paths(as_location(s3_data_dir), product).manifest, grid).latest()
    assert sorted(rows) == sorted(chunks) and all(r.status == "full" and r.snapshot_id for r in rows.values())
