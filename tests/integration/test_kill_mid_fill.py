"""SIGKILL a fill at random moments (downloading, committing, between commit and manifest): nothing is lost.

After every kill, before the rerun, the manifest never calls a chunk `full` whose pixels are not all in
the cube; the rerun then completes and the cube equals the rasterio mosaic of the tiles.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, ChunkId, bounds_window
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.store import Cube, cube_exists, cube_paths

from . import _workers
from .conftest import rasterio_mosaic

TRIALS = 20
RESOLUTION = 10
PRODUCT = arcticdem(RESOLUTION)
GRID = ChunkGrid(PRODUCT)
ROI = (690_000.0, 3_201_000.0, 709_000.0, 3_210_000.0)
"""Two 10 m chunks (10 km, x 689,900 … 699,900 … 709,900 m) at the supertile corner: one tile over the west chunk,
two over the east one."""
MOMENTS = {
    "download": ("chunks in the ROI", (0.0, 0.25)),
    "commit": ("merging", (0.0, 0.04)),
    "manifest": ("recording it in the manifest", (0.0, 0.0)),
}
"""Where to kill: after which log line, and how long after it (uniform random, seconds). Each window is shorter than
what follows the line in a fill of these two 1000² chunks (about 0.3 s of downloads, 40 ms of commit)."""


@pytest.fixture(scope="module")
def oracle(catalog: LocalCatalog) -> dict[ChunkId, dict[str, np.ndarray]]:
    """Every chunk of the ROI as rasterio mosaics the published tiles."""
    return {c: rasterio_mosaic(catalog, RESOLUTION, GRID.window(c))
            for c in GRID.chunks(bounds_window(PRODUCT.extent, ROI))}


@pytest.fixture(scope="module")
def forkserver() -> Iterator[multiprocessing.context.BaseContext]:
    """Fill processes forked from a server that has darts_aux imported (a kill costs no interpreter start)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.integration._workers", "darts_aux.api", "darts_aux.fill",
                                    "darts_aux.sources.arcticdem", "darts_aux.sources.stac", "pystac_client"])
    yield context


def _kill_after(process: multiprocessing.process.BaseProcess, log: Path, marker: str, delay: float,
                timeout: float = 120.0) -> str:
    """SIGKILL the process `delay` s after `marker` appears in its log; returns the log's last line then."""
    deadline = time.monotonic() + timeout
    while marker not in (log.read_text() if log.exists() else ""):
        if not process.is_alive():
            return "exited before the marker"
        assert time.monotonic() < deadline, f"no {marker!r} in {log}"
        time.sleep(0.002)
    time.sleep(delay)
    process.kill()
    process.join()
    lines = log.read_text().splitlines()
    return lines[-1] if lines else ""


def _assert_full_means_complete(data_dir: Path, oracle: dict[ChunkId, dict[str, np.ndarray]]) -> dict[str, int]:
    """No manifest row says `full` unless the chunk's pixels equal the oracle; returns rows by status."""
    rows = Manifest(cube_paths(data_dir, PRODUCT).manifest, GRID).latest() if cube_exists(data_dir, PRODUCT) else {}
    counts = {"full": 0, "partial": 0}
    for chunk, row in rows.items():
        counts[row.status] += 1
        if row.status == "full":
            got = Cube.open(data_dir, PRODUCT).read(GRID.window(chunk))
            np.testing.assert_array_equal(got["dem"], oracle[chunk]["dem"], err_msg=f"{chunk} is 'full' but incomplete")
    return counts


def test_twenty_kills_lose_nothing(use_catalog: LocalCatalog, inline: None, oracle: dict,
                                   forkserver: multiprocessing.context.BaseContext, tmp_path: Path) -> None:
    rng = random.Random(1124)
    settings = {"stac_url": use_catalog.stac_url, "orchestrator": "inline", "retry_delay_seconds": "0.05",
                "download_workers": "2"}
    moments = [list(MOMENTS)[trial % len(MOMENTS)] for trial in range(TRIALS)]
    seen: dict[str, list[str]] = {}
    assert len(oracle) == 2 and all(o["datamask"].any() for o in oracle.values())
    for trial, moment in enumerate(moments):
        data_dir, log = tmp_path / f"trial-{trial}", tmp_path / f"trial-{trial}.log"
        marker, (low, high) = MOMENTS[moment]
        process = forkserver.Process(target=_workers.fill_logging_to,
                                     args=(settings, str(data_dir), ROI, RESOLUTION, str(log)))
        process.start()
        last = _kill_after(process, log, marker, rng.uniform(low, high))
        assert process.exitcode == -9, f"trial {trial}: the fill ended before the kill ({last})"
        seen.setdefault(moment, []).append(last)

        _assert_full_means_complete(data_dir, oracle)
        again = load_arcticdem(GeoBox.from_bbox(ROI, "EPSG:3413", resolution=RESOLUTION), data_dir, RESOLUTION)
        assert int(again.datamask.sum()) > 0
        counts = _assert_full_means_complete(data_dir, oracle)
        assert counts == {"full": len(oracle), "partial": 0}, f"trial {trial} after the rerun: {counts}"
        cube = Cube.open(data_dir, PRODUCT)
        for chunk, expected in oracle.items():
            got = cube.read(GRID.window(chunk))
            np.testing.assert_array_equal(got["datamask"], expected["datamask"], err_msg=f"trial {trial} {chunk}")
    assert sorted(seen) == sorted(MOMENTS) and sum(map(len, seen.values())) == TRIALS
    for moment, lines in seen.items():
        print(f"killed {len(lines)} times at {moment!r}; "
              f"last log lines: {sorted(set(line.split(':')[0][:40] for line in lines))}")
    assert any(
        "recording it in the manifest" in line for line in seen["manifest"]
    ), "killed between commit and manifest"
