"""Fills sharing one cache download each chunk once: the server's own log counts the requests.

Processes loading the same region at once each claim what they download and wait for the chunks the others hold;
a Prefect flow waits for a chunk a separate process is downloading. Pixels are checked against the server's formula.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from darts_aux.api import fill
from darts_aux.claims import CLAIMS_DIR
from darts_aux.grid import ChunkGrid, bounds_window
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.location import as_location
from darts_aux.manifest import Manifest
from darts_aux.products import tcvis
from darts_aux.settings import get_settings
from darts_aux.store import Cube, cube_paths

from . import _workers
from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_data_dir, s3_server  # noqa: F401 - fixtures
from .test_tcvis import BANDS, CORNER_LAT, CORNER_LON
from .test_tcvis import oracle as tcvis_oracle

PRODUCT = tcvis()
GRID = ChunkGrid(PRODUCT)
PROCESSES = 3
TWO_CHUNKS = (CORNER_LON - 0.1, CORNER_LAT + 0.02, CORNER_LON + 0.1, CORNER_LAT + 0.08)
"""A box across the corner's meridian, north of it: the two chunks either side."""
ONE_CHUNK = (CORNER_LON - 0.1, CORNER_LAT + 0.02, CORNER_LON - 0.02, CORNER_LAT + 0.08)
"""The western one of those two chunks."""


@pytest.fixture(scope="module")
def pool() -> Iterator[multiprocessing.pool.Pool]:
    """Worker processes (spawned: each its own interpreter, settings and claims)."""
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as workers:
        yield workers


@pytest.fixture(scope="module")
def requests_alone(earth_engine: LocalEarthEngine, pool: multiprocessing.pool.Pool,
                   tmp_path_factory: pytest.TempPathFactory) -> int:
    """computePixels requests one process alone sends to fill the two chunks (the count to match)."""
    earth_engine.clear_faults()
    earth_engine.reset_log()
    pool.apply(_workers.load_tcvis_region, (_settings(earth_engine), str(tmp_path_factory.mktemp("alone")),
                                            TWO_CHUNKS, 0.0))
    count = len(earth_engine.compute_requests())
    assert count >= 2
    return count


def _settings(engine: LocalEarthEngine) -> dict[str, str]:
    return {"ee_url": engine.url, "ee_project": engine.project, "ee_credentials": "anonymous",
            "orchestrator": "inline", "retry_delay_seconds": "0.05"}


def _check_cube(data_dir: Path | str, bounds: tuple[float, float, float, float]) -> None:
    """Every chunk of the box full in the manifest and equal to the server's formula."""
    chunks = GRID.chunks(bounds_window(PRODUCT.extent, bounds))
    rows = Manifest(cube_paths(data_dir, PRODUCT).manifest, GRID).latest()
    assert sorted(rows) == sorted(chunks) and all(row.status == "full" for row in rows.values())
    cube = Cube.open(data_dir, PRODUCT)
    for chunk in chunks:
        got, expected = cube.read(GRID.window(chunk)), tcvis_oracle(PRODUCT, GRID.window(chunk))
        for name in BANDS:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{chunk} {name}")
    claims = cube_paths(data_dir, PRODUCT).root / CLAIMS_DIR
    assert not (list(claims.iterdir()) if claims.exists() else []), "every claim was released"


@pytest.fixture(params=["local", "s3"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Where the shared cache lives (a folder, or a prefix on the local S3 server) and the settings reaching it."""
    if request.param == "local":
        return str(tmp_path), {}
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = request.getfixturevalue("s3_data_dir")
    return prefix, {"s3_endpoint_url": server.endpoint, "s3_access_key_id": ACCESS_KEY,
                    "s3_secret_access_key": SECRET_KEY, "s3_region": REGION}


def test_processes_loading_one_region_at_once_download_each_chunk_once(
        requests_alone: int, use_earth_engine: LocalEarthEngine, pool: multiprocessing.pool.Pool,
        cache: tuple[str, dict[str, str]]) -> None:
    root, reach = cache
    settings = {**_settings(use_earth_engine), **reach}
    assert len(GRID.chunks(bounds_window(PRODUCT.extent, TWO_CHUNKS))) == 2
    use_earth_engine.set_delay(0.3)  # each chunk takes a while, so the processes overlap for sure
    try:
        start = time.time() + 0.5
        jobs = [(settings, f"{root}/shared", TWO_CHUNKS, start + 0.15 * k) for k in range(PROCESSES)]
        results = pool.starmap(_workers.load_tcvis_region, jobs)
    finally:
        use_earth_engine.set_delay(0.0)
    assert len({valid for valid, _ in results}) == 1 and results[0][0] > 0, "every process got the whole region"
    assert len(use_earth_engine.compute_requests()) == requests_alone, "three processes asked for each chunk once"
    _check_cube(f"{root}/shared", TWO_CHUNKS)


def test_a_prefect_fill_waits_for_the_chunk_another_process_is_downloading(
        requests_alone: int, use_earth_engine: LocalEarthEngine, forget_new_flow_runs: None,
        pool: multiprocessing.pool.Pool, tmp_path: Path) -> None:
    settings, shared = _settings(use_earth_engine), tmp_path / "shared"
    window = bounds_window(PRODUCT.extent, TWO_CHUNKS)
    west = GRID.chunks(bounds_window(PRODUCT.extent, ONE_CHUNK))
    assert len(west) == 1 and west[0] in GRID.chunks(window)
    claim = cube_paths(shared, PRODUCT).root / CLAIMS_DIR / f"{west[0]}.claim"

    use_earth_engine.set_delay(3.0)  # the other process holds its claim for seconds, whatever the flow takes to start
    try:
        other = pool.apply_async(_workers.load_tcvis_region, (settings, str(shared), ONE_CHUNK, 0.0))
        deadline = time.monotonic() + 60
        while not claim.exists():  # the other process has planned its fill and claimed the chunk
            if other.ready():
                other.get()  # raises what stopped it
            assert time.monotonic() < deadline and not other.ready(), "the other process never claimed its chunk"
            time.sleep(0.05)
        report = fill(as_location(shared), PRODUCT, window, get_settings())  # through the Prefect flow
        assert other.get(timeout=120)[0] > 0
    finally:
        use_earth_engine.set_delay(0.0)
    assert (report.chunks_total, report.chunks_fetched, report.chunks_by_others) == (2, 1, 1)
    assert report.seconds_waiting > 0
    assert len(use_earth_engine.compute_requests()) == requests_alone, "the process and the flow: each chunk once"
    _check_cube(shared, TWO_CHUNKS)
