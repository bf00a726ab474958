"""Functions run in spawned worker processes by the concurrency tests (importable by path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.mosaic import fill_gaps
from darts_aux.products import arcticdem
from darts_aux.store import Cube


def create_cube(data_dir: str) -> str:
    """Open-or-create the 32 m cube; returns the branch tip."""
    return Cube.open_or_create(Path(data_dir), arcticdem(32)).snapshot_id()


def write_half(data_dir: str, left: bool, rounds: int) -> int:
    """Merge a value into one half of chunk (5, 5), `rounds` times (one commit each); returns commits made."""
    product = arcticdem(32)
    cube = Cube.open_or_create(Path(data_dir), product)
    window = ChunkGrid(product).window(ChunkId(5, 5))
    made = 0
    for step in range(rounds):
        rows, cols = window.shape
        new = {"dem": np.full((rows, cols), np.nan, "float32"), "datamask": np.zeros((rows, cols), "uint8")}
        band = slice(step * 10, step * 10 + 10)
        half = slice(0, cols // 2) if left else slice(cols // 2, cols)
        new["dem"][band, half] = 1.0 if left else 2.0
        new["datamask"][band, half] = 1

        def merge(existing: dict, new: dict = new) -> dict:
            out = {k: v.copy() for k, v in existing.items()}
            fill_gaps(out["dem"], new["dem"], float("nan"))
            fill_gaps(out["datamask"], new["datamask"], 0)
            return out

        with cube.commit_lock():
            cube.commit_window(window, merge, f"half {'left' if left else 'right'} {step}", {})
        made += 1
    return made
