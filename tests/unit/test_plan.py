"""The fill plan: chunks a region touches, how many are full, the bytes a fill would read, the chunk grid's offset."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window
from darts_aux.manifest import ChunkRecord, Manifest, utc_now
from darts_aux.plan import fill_plan
from darts_aux.products import Product, arcticdem, tcvis
from darts_aux.store import cube_paths

WEEK = 7 * 86400
ARCTICDEM_32 = replace(arcticdem(32), fill_chunk=5000)
"""The 32 m cube laid out in 5000² fill chunks (as TCVIS is): a grid coarse enough to write its edges out by hand."""
CHUNK_METRES = 5000 * 32  # such a fill chunk is 160 km across


def _window(bbox: tuple[float, float, float, float], product: Product = ARCTICDEM_32) -> PixelWindow:
    return roi_window(GeoBox.from_bbox(bbox, product.extent.crs, resolution=product.resolution), product.extent)


def _with_cube(data_dir: Path, product: Product) -> Manifest:
    """A data dir whose cube marker exists (the plan reads the manifest of existing cubes only)."""
    paths = cube_paths(data_dir, product)
    paths.marker.parent.mkdir(parents=True)
    paths.marker.write_text("{}")
    return Manifest(paths.manifest, ChunkGrid(product))


def _row(chunk: ChunkId, status: str, age_days: float = 0.0) -> ChunkRecord:
    coverage = 1.0 if status == "full" else 0.4
    return ChunkRecord(chunk, status, ("item",), (), coverage, utc_now() - timedelta(days=age_days), "S")  # type: ignore[arg-type]


def test_a_320_km_box_at_32_m_touches_9_chunks_not_4(tmp_path: Path) -> None:
    plan = fill_plan(tmp_path / "none", ARCTICDEM_32, _window((0, 0, 320_000, 320_000)), WEEK)
    # the cube's corner is (-4,000,096, 4,100,096): chunk edges at -96 + k·160 km in x, 4,100,096 - k·160 km in y
    x_edges = [-4_000_096 + k * CHUNK_METRES for k in range(60)]
    y_edges = [4_100_096 - k * CHUNK_METRES for k in range(60)]
    x_spans = [e for e in x_edges if e < 320_000 and e + CHUNK_METRES > 0]
    y_spans = [e for e in y_edges if e > 0 and e - CHUNK_METRES < 320_000]
    assert len(plan.chunks) == len(x_spans) * len(y_spans) == 9
    assert plan.fewest_chunks == 4 and (plan.chunk_rows, plan.chunk_cols) == (3, 3)
    assert plan.chunk_bounds() == (-96.0, -59_904.0, 479_904.0, 420_096.0)
    assert plan.missing == plan.chunks and plan.full == plan.partial == () and not plan.settled
    assert plan.estimated_bytes == 9 * 5000 * 5000 * 5  # float32 dem + uint8 datamask
    assert plan.summary() == ("plan for arcticdem-32m: 9 chunks over the region (3 × 3), 0 full, 0 partial, 9 not "
                              "fetched yet; a fill searches 9 chunks and reads about 1,125.0 MB of pixels")
    note = plan.grid_note()
    assert note is not None and note.startswith("a region of this size fits in 4 chunks, but this one touches 9")
    assert "x = -96 m + k × 160,000 m and y = -59,904 m + k × 160,000 m" in note
    assert "(x = -4,000,096 m, y = 4,100,096 m)" in note and "e+" not in note


def test_a_box_on_the_chunk_grid_has_no_note(tmp_path: Path) -> None:
    plan = fill_plan(tmp_path, ARCTICDEM_32, _window((-96 + 16, -59_904 + 16, 319_904 - 16, 260_096 - 16)), WEEK)
    assert len(plan.chunks) == plan.fewest_chunks == 4
    assert plan.grid_note() is None
    assert plan.summary().startswith("plan for arcticdem-32m: 4 chunks over the region (2 × 2)")


def test_one_chunk_is_singular(tmp_path: Path) -> None:
    plan = fill_plan(tmp_path, ARCTICDEM_32, _window((650_000, 3_150_000, 690_000, 3_170_000)), WEEK)
    assert plan.summary() == ("plan for arcticdem-32m: 1 chunk over the region (1 × 1), 0 full, 0 partial, 1 not "
                              "fetched yet; a fill searches 1 chunk and reads about 125.0 MB of pixels")


def test_the_manifest_decides_full_partial_and_what_a_fill_would_read(tmp_path: Path) -> None:
    window = _window((0, 0, 320_000, 320_000))
    chunks = ChunkGrid(ARCTICDEM_32).chunks(window)
    manifest = _with_cube(tmp_path, ARCTICDEM_32)
    manifest.append([_row(chunks[0], "full"), _row(chunks[1], "full"), _row(chunks[2], "partial", age_days=1),
                     _row(ChunkId(0, 0), "full")])  # a chunk elsewhere counts for nothing
    plan = fill_plan(tmp_path, ARCTICDEM_32, window, WEEK)
    assert plan.full == tuple(chunks[:2]) and plan.partial == (chunks[2],) and plan.missing == tuple(chunks[3:])
    assert not plan.settled and plan.to_search == tuple(chunks[2:])
    assert plan.estimated_bytes == 7 * 5000 * 5000 * 5
    assert "9 chunks over the region (3 × 3), 2 full, 1 partial, 6 not fetched yet; a fill searches 7 chunks" \
        in plan.summary()


@pytest.mark.parametrize(("partial_age_days", "settled"), [(1, True), (8, False)])
def test_a_region_is_settled_when_every_chunk_is_full_or_recently_checked(
        tmp_path: Path, partial_age_days: float, settled: bool) -> None:
    window = _window((600_000, 3_100_000, 680_000, 3_130_000))  # two chunks, across x = 639,904
    first, second = ChunkGrid(ARCTICDEM_32).chunks(window)
    _with_cube(tmp_path, ARCTICDEM_32).append([_row(first, "full"), _row(second, "partial", partial_age_days)])
    plan = fill_plan(tmp_path, ARCTICDEM_32, window, WEEK)
    assert plan.settled is settled
    assert plan.estimated_bytes == (0 if settled else 5000 * 5000 * 5)
    assert plan.summary().endswith("nothing to fetch (every chunk is full or was checked recently)") is settled


def test_a_chunk_cut_at_the_cube_edge_counts_its_own_pixels(tmp_path: Path) -> None:
    product = tcvis()
    rows, cols = product.extent.shape
    last_col = (cols - 1) // 5000
    window = PixelWindow(10_000, 10_100, cols - 200, cols - 100)
    plan = fill_plan(tmp_path, product, window, WEEK)
    assert plan.chunks == (ChunkId(2, last_col),)
    assert plan.estimated_bytes == 5000 * (cols - last_col * 5000) * 4  # 4 uint8 variables, the chunk cut at the edge
    assert plan.grid_note() is None
