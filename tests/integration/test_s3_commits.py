"""Commits racing on object storage (no lock): other chunks are rebased over, the same chunk is re-merged."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.products import arcticdem
from darts_aux.store import Cube

from ._s3 import S3Server, s3_data_dir, s3_server  # noqa: F401 - fixtures
from ._workers import fill_dem_gaps

PRODUCT = arcticdem(32)
GRID = ChunkGrid(PRODUCT)


def _band_merge(rows: slice, value: float) -> object:
    """A merge that fills a band of rows of the chunk with `value` (keeping pixels already there)."""

    def merge(existing: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        shape = GRID.window(ChunkId(0, 0)).shape
        new = {"dem": np.full(shape, np.nan, "float32"), "datamask": np.zeros(shape, "uint8")}
        new["dem"][rows], new["datamask"][rows] = value, 1
        return fill_dem_gaps(existing, new)

    return merge


def test_racing_commits_on_s3_keep_every_write(s3_server: S3Server, s3_data_dir: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    Cube.open_or_create(s3_data_dir, PRODUCT)
    own_chunks = [ChunkId(1, c) for c in range(4)]
    shared = ChunkId(2, 2)
    start = threading.Barrier(6)

    def writer(target: ChunkId, rows: slice, value: float) -> None:
        cube = Cube.open(s3_data_dir, PRODUCT)  # each writer its own repository handle, as separate processes have
        start.wait()
        cube.commit_window(GRID.window(target), _band_merge(rows, value), f"write {target} {value}", {})

    jobs = [(chunk, slice(0, 100), float(i + 1)) for i, chunk in enumerate(own_chunks)]
    jobs += [(shared, slice(0, 50), 10.0), (shared, slice(50, 100), 20.0)]
    with caplog.at_level(logging.INFO, logger="darts_aux.store"):
        threads = [threading.Thread(target=writer, args=job) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    cube = Cube.open(s3_data_dir, PRODUCT)
    for i, chunk in enumerate(own_chunks):
        dem = cube.read(GRID.window(chunk))["dem"]
        assert (dem[:100] == i + 1).all() and np.isnan(dem[100:]).all(), chunk
    dem = cube.read(GRID.window(shared))["dem"]
    assert (dem[:50] == 10.0).all() and (dem[50:100] == 20.0).all()
    assert len([s for s in cube.history() if s.message.startswith("write")]) == len(jobs)
    redos = [r.getMessage() for r in caplog.records if "re-reading" in r.getMessage()]
    assert all(str(shared) in message for message in redos), f"only the shared chunk is re-merged: {redos}"
