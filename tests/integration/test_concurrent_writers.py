"""Four processes filling one cache at once: nothing lost, manifest rows right, readers never blocked or torn.

ArcticDEM writers each see a different catalog (four STAC APIs over the same tiles, each publishing a
quarter of them), so processes sharing a partial chunk each contribute different tiles to it, the case
where a lost merge or a last-writer-wins manifest would show.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, bounds_window, window_bounds
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.manifest import Manifest
from darts_aux.products import TCVIS_PIXEL, arcticdem, tcvis
from darts_aux.store import Cube, cube_paths

from . import _workers
from .conftest import CATALOG_ROOT, rasterio_mosaic
from .test_tcvis import BANDS
from .test_tcvis import oracle as tcvis_oracle

WRITERS = 4
ROUNDS = 10
TCVIS_ROUNDS = 4
PRODUCT = arcticdem(32)
GRID = ChunkGrid(PRODUCT)
DATA_X, DATA_Y = (420_000.0, 880_000.0), (2_920_000.0, 3_280_000.0)
"""Where the 32 m tiles of the default catalog hold data (the 20 supertiles: x 400–900 km, y 2900–3300 km)."""


@pytest.fixture(scope="module")
def views(catalog: LocalCatalog) -> Iterator[list[LocalCatalog]]:
    """Four catalogs over the same files, view k publishing every 4th 32 m tile from the k-th."""
    ids = sorted(catalog.spec.item_ids(32))
    everything = catalog.spec.item_ids()
    started: list[LocalCatalog] = []
    try:
        for k in range(WRITERS):
            shown = set(ids[k::WRITERS])
            spec = catalog.spec.with_held_back(i for i in everything if i not in shown)
            started.append(LocalCatalog(CATALOG_ROOT, spec).start())
        yield started
    finally:
        for view in started:
            view.stop()


@pytest.fixture(scope="module")
def pool() -> Iterator[multiprocessing.pool.Pool]:
    """Four worker processes (spawned, so each has its own interpreter, locks and icechunk session)."""
    with multiprocessing.get_context("spawn").Pool(WRITERS) as workers:
        yield workers


def _settings(stac_url: str) -> dict[str, str]:
    # revisit_days 0: a partial chunk another writer checked a moment ago is searched again. Each writer sees a
    # different catalog here; with the default a writer starting after another's commit would trust that check
    # (right when everyone sees one catalog) and contribute nothing.
    return {"stac_url": stac_url, "orchestrator": "inline", "retry_delay_seconds": "0.05", "revisit_days": "0"}


CHUNK_METRES = PRODUCT.fill_chunk * PRODUCT.resolution
"""Edge of a 32 m chunk (32 km)."""
SUPERTILE_CORNERS = [(x, y) for y in (3_200_000.0, 3_100_000.0) for x in (600_000.0, 700_000.0)]
"""Corners of four supertiles inside the block: each view publishes a different quarter of the tiles, so writers
sharing the chunk that holds such a corner contribute different tiles to it."""


def _chunk_at(x: float, y: float) -> ChunkId:
    (chunk,) = GRID.chunks(bounds_window(PRODUCT.extent, (x - 1, y - 1, x + 1, y + 1)))
    return chunk


def _random_roi(rng: random.Random, shared: ChunkId) -> tuple[float, float, float, float]:
    """A box of 1/16 to 3/4 of a chunk's edge around a random point of the shared chunk, kept inside the data area."""
    left, bottom, right, top = GRID.footprint(shared).bounds
    x = rng.uniform(max(left, DATA_X[0]), min(right, DATA_X[1]))
    y = rng.uniform(max(bottom, DATA_Y[0]), min(top, DATA_Y[1]))
    half_w, half_h = (rng.uniform(CHUNK_METRES / 32, CHUNK_METRES * 3 / 8) for _ in range(2))
    return (max(x - half_w, DATA_X[0]), max(y - half_h, DATA_Y[0]),
            min(x + half_w, DATA_X[1]), min(y + half_h, DATA_Y[1]))


def _tiles_over(view: LocalCatalog, window: PixelWindow) -> set[str]:
    """The 32 m tiles a view publishes whose raster overlaps a cube window."""
    left, bottom, right, top = window_bounds(PRODUCT.extent, window)
    return {t.item_id for t in view.spec.tiles(32) if t.item_id in view.published()
            and t.bounds[0] < right and t.bounds[2] > left and t.bounds[1] < top and t.bounds[3] > bottom}


def _covers_chunk(tiles: set[str], window: PixelWindow) -> bool:
    """Whether the tiles' rasters cover every pixel of the window (counted on a pixel mask, not shapes)."""
    mask = np.zeros(window.shape, bool)
    left, _, _, top = window_bounds(PRODUCT.extent, window)
    for tile in tiles:
        t_left, t_bottom, t_right, t_top = TileRef.parse(tile).bounds
        c0, c1 = (np.clip(np.round((np.array([t_left, t_right]) - left) / 32), 0, window.shape[1])).astype(int)
        r0, r1 = (np.clip(np.round((top - np.array([t_top, t_bottom])) / 32), 0, window.shape[0])).astype(int)
        mask[r0:r1, c0:c1] = True
    return bool(mask.all())


def test_four_processes_sharing_partial_chunks_lose_nothing(catalog: LocalCatalog, views: list[LocalCatalog],
                                                            pool: multiprocessing.pool.Pool, tmp_path: Path) -> None:
    rng = random.Random(20261124)
    shared_chunks = [_chunk_at(x, y) for x, y in SUPERTILE_CORNERS]
    assert len(set(shared_chunks)) == 4
    oracles: dict[tuple[ChunkId, frozenset[str]], dict[str, np.ndarray]] = {}
    checked_chunks = 0
    for round_ in range(ROUNDS):
        data_dir = tmp_path / f"round-{round_}"
        shared = rng.choice(shared_chunks)
        rois = [_random_roi(rng, shared) for _ in range(WRITERS)]
        start = time.time() + 0.5
        jobs = [(_settings(views[k].stac_url), str(data_dir), rois[k], 32, start + rng.uniform(0, 1.0))
                for k in range(WRITERS)]
        began = time.perf_counter()
        pool.starmap(_workers.load_arcticdem_region, jobs)  # raises if any writer failed
        print(f"round {round_}: {len(rois)} writers in {time.perf_counter() - began:.1f} s")

        contributions: dict[ChunkId, set[str]] = {}
        for k, roi in enumerate(rois):
            for chunk in GRID.chunks(bounds_window(PRODUCT.extent, roi)):
                contributions.setdefault(chunk, set()).update(_tiles_over(views[k], GRID.window(chunk)))
        assert len(contributions[shared]) > len(_tiles_over(views[0], GRID.window(shared))), "views overlap"

        cube = Cube.open(data_dir, PRODUCT)
        rows = Manifest(cube.paths.manifest, GRID).latest()
        assert set(rows) == set(contributions), f"round {round_}: manifest rows for exactly the touched chunks"
        for chunk, tiles in contributions.items():
            window = GRID.window(chunk)
            key = (chunk, frozenset(tiles))
            if key not in oracles:
                refs = sorted((TileRef.parse(t) for t in tiles), key=lambda t: t.item_id)
                oracles[key] = rasterio_mosaic(catalog, 32, window, refs) if refs else {
                    "dem": np.full(window.shape, np.nan, "float32"), "datamask": np.zeros(window.shape, "uint8")}
            got = cube.read(window)
            np.testing.assert_array_equal(got["dem"], oracles[key]["dem"], err_msg=f"round {round_} {chunk}")
            np.testing.assert_array_equal(got["datamask"], oracles[key]["datamask"], err_msg=f"round {round_} {chunk}")
            row = rows[chunk]
            assert row.items_applied == tuple(sorted(tiles)) and row.items_failed == ()
            assert row.status == ("full" if _covers_chunk(tiles, window) else "partial"), f"round {round_} {chunk}"
            checked_chunks += 1
    assert checked_chunks >= 2 * ROUNDS
    print(f"{ROUNDS} rounds of {WRITERS} writers: {checked_chunks} touched chunks checked pixel for pixel")


def test_four_processes_filling_tcvis_at_once(use_earth_engine: LocalEarthEngine, pool: multiprocessing.pool.Pool,
                                              tmp_path: Path) -> None:
    product = tcvis()
    grid = ChunkGrid(product)
    rng = random.Random(66)
    settings = {"ee_url": use_earth_engine.url, "ee_project": use_earth_engine.project, "ee_credentials": "anonymous",
                "orchestrator": "inline", "retry_delay_seconds": "0.05"}
    corner = (product.extent.x0 + 125 * product.fill_chunk * TCVIS_PIXEL,
              product.extent.y0 - 18 * product.fill_chunk * TCVIS_PIXEL)
    for round_ in range(TCVIS_ROUNDS):
        data_dir = tmp_path / f"round-{round_}"
        rois = []
        for _ in range(WRITERS):  # boxes around a chunk corner, so writers share one to four chunks
            lon, lat = corner[0] + rng.uniform(-0.3, 0.3), corner[1] + rng.uniform(-0.3, 0.3)
            rois.append((lon - rng.uniform(0.02, 0.4), lat - rng.uniform(0.02, 0.2),
                         lon + rng.uniform(0.02, 0.4), lat + rng.uniform(0.02, 0.2)))
        start = time.time() + 0.5
        jobs = [(settings, str(data_dir), roi, start + rng.uniform(0, 1.0)) for roi in rois]
        results = pool.starmap(_workers.load_tcvis_region, jobs)
        assert all(valid > 0 for valid, _ in results)
        touched = {c for roi in rois for c in grid.chunks(bounds_window(product.extent, roi))}
        rows = Manifest(cube_paths(data_dir, product).manifest, grid).latest()
        assert set(rows) == touched and all(r.status == "full" and r.items_failed == () for r in rows.values())
        cube = Cube.open(data_dir, product)
        for chunk in touched:
            window = grid.window(chunk)
            got, expected = cube.read(window), tcvis_oracle(product, window)
            for name in BANDS:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=f"round {round_} {chunk} {name}")


def test_readers_do_not_wait_for_writers_and_never_see_a_torn_chunk(use_catalog: LocalCatalog, inline: None,
                                                                    pool: multiprocessing.pool.Pool,
                                                                    tmp_path: Path) -> None:
    full = GeoBox.from_bbox((640_000, 3_150_000, 700_000, 3_190_000), "EPSG:3413", resolution=32)
    first = load_arcticdem(full, tmp_path, 32)
    assert int(first.datamask.sum()) > 0
    cube = Cube.open(tmp_path, PRODUCT)

    # 1. Holding the commit lock (as a writer does) does not stop a reader of settled chunks.
    with FileLock(cube.paths.lock), ThreadPoolExecutor(1) as thread:
        again = thread.submit(load_arcticdem, full, tmp_path, 32).result(timeout=60)
    np.testing.assert_array_equal(again.dem.values, first.dem.values)

    # 2. While two processes merge bands into one chunk, every read shows whole commits only.
    rounds = 12
    writes = [pool.apply_async(_workers.write_half, (str(tmp_path), left, rounds)) for left in (True, False)]
    window = GRID.window(ChunkId(5, 5))
    half = window.shape[1] // 2
    reads = 0
    while not all(w.ready() for w in writes) or reads < 3:
        dem = cube.read(window)["dem"]
        bands = dem[: rounds * 10].reshape(rounds, 10, -1)
        for side, value in ((slice(0, half), 1.0), (slice(half, None), 2.0)):
            written = ~np.isnan(bands[:, :, side])
            per_band = written.reshape(rounds, -1)
            assert (per_band.all(axis=1) | ~per_band.any(axis=1)).all(), "a band is half written"
            done = per_band.all(axis=1)
            assert (done[: done.sum()]).all(), "bands are committed in order"
            assert (bands[done][:, :, side] == value).all()
        reads += 1
    assert [w.get() for w in writes] == [rounds, rounds]
    print(f"{reads} reads during {2 * rounds} commits, every one whole")
    final = cube.read(window)["dem"][: rounds * 10]
    assert (final[:, :half] == 1.0).all() and (final[:, half:] == 2.0).all()
