"""darts_aux.store writes: zarr chunks holding only the fill value are left out, however zarr is told to test them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from zarr.core.sync import sync

from darts_aux.grid import PixelWindow
from darts_aux.products import arcticdem
from darts_aux.store import Cube, has_fill_only_chunk

PRODUCT = arcticdem(32)
STEP = PRODUCT.read_chunk
WINDOW = PixelWindow(10 * STEP, 12 * STEP, 20 * STEP, 23 * STEP)
"""Two by three zarr chunks, aligned to the chunk grid as every fill chunk is."""


def values_with(data_chunks: set[tuple[int, int]], last_row_only: bool = False) -> dict[str, np.ndarray]:
    """dem/datamask over WINDOW: data in the listed (row, col) zarr chunks, fill values elsewhere."""
    dem = np.full(WINDOW.shape, np.nan, np.float32)
    mask = np.zeros(WINDOW.shape, np.uint8)
    for row, col in data_chunks:
        rows = slice(row * STEP + (STEP - 1 if last_row_only else 0), (row + 1) * STEP)
        cols = slice(col * STEP, (col + 1) * STEP)
        dem[rows, cols] = np.float32(12.5) + row + col
        mask[rows, cols] = 1
    return {"dem": dem, "datamask": mask}


@pytest.mark.parametrize(("data_chunks", "expected"), [
    ({(r, c) for r in range(2) for c in range(3)}, False),
    ({(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)}, True),
    (set(), True),
])
@pytest.mark.parametrize("last_row_only", [False, True], ids=["whole-chunks", "last-row-only"])
def test_fill_only_chunks_are_found(data_chunks: set, expected: bool, last_row_only: bool) -> None:
    for name, values in values_with(data_chunks, last_row_only).items():
        fill = PRODUCT.variable(name).fill_value
        assert has_fill_only_chunk(values, WINDOW, (STEP, STEP), fill) is expected, name


def test_unaligned_windows_are_cut_at_the_chunk_grid() -> None:
    window = PixelWindow(STEP - 10, 2 * STEP, 0, STEP)  # 10 rows of one zarr chunk, then a whole one
    dem = np.full(window.shape, np.nan, np.float32)
    dem[10:, :] = 1.0
    assert has_fill_only_chunk(dem, window, (STEP, STEP), np.float32(np.nan))
    dem[:10, 5] = 2.0
    assert not has_fill_only_chunk(dem, window, (STEP, STEP), np.float32(np.nan))


def stored_chunks(cube: Cube) -> dict[str, set[tuple[int, int]]]:
    """(row, col) of every stored zarr chunk under WINDOW, per variable, relative to the window."""
    store = cube.repo.readonly_session("main").store
    out = {}
    for variable in PRODUCT.variables:
        keys = {(r, c): f"{variable.name}/c/{WINDOW.row0 // STEP + r}/{WINDOW.col0 // STEP + c}"
                for r in range(2) for c in range(3)}
        out[variable.name] = {rc for rc, key in keys.items() if sync(store.exists(key))}
    return out


@pytest.mark.parametrize("data_chunks", [
    {(r, c) for r in range(2) for c in range(3)},
    {(0, 1), (1, 2)},
], ids=["all-chunks-hold-data", "some-chunks-fill-only"])
def test_a_commit_stores_exactly_the_chunks_holding_data(tmp_path: Path, data_chunks: set) -> None:
    cube = Cube.open_or_create(tmp_path, PRODUCT)
    values = values_with(data_chunks)
    cube.commit_window(WINDOW, lambda existing: {k: v.copy() for k, v in values.items()}, "write", {})
    assert stored_chunks(cube) == {"dem": data_chunks, "datamask": data_chunks}
    read = cube.read(WINDOW)
    np.testing.assert_array_equal(read["dem"], values["dem"])
    np.testing.assert_array_equal(read["datamask"], values["datamask"])
