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


def fill_dem_gaps(existing: dict | None, new: dict) -> dict:
    """A commit merge for ArcticDEM arrays: `new` fills the pixels `existing` lacks (all of them if none stored)."""
    if existing is None:  # nothing stored under the chunk yet
        return new
    out = {k: v.copy() for k, v in existing.items()}
    fill_gaps(out["dem"], new["dem"], float("nan"))
    fill_gaps(out["datamask"], new["datamask"], 0)
    return out


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

        with cube.commit_lock():
            cube.commit_window(window, lambda existing, new=new: fill_dem_gaps(existing, new),
                               f"half {'left' if left else 'right'} {step}", {})
        made += 1
    return made


def _configure(settings: dict[str, str]) -> None:
    """Set DARTS_AUX_* in this worker and reload the settings."""
    import os

    from darts_aux.settings import reload_settings

    for key, value in settings.items():
        os.environ[f"DARTS_AUX_{key.upper()}"] = value
    reload_settings()


def _wait_until(start_at: float) -> None:
    import time

    time.sleep(max(0.0, start_at - time.time()))


def load_arcticdem_region(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float],
                          resolution: int, start_at: float) -> tuple[int, float]:
    """`load_arcticdem` of a bbox (EPSG:3413) from `start_at` on; returns (valid pixels, seconds)."""
    import time

    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem

    _configure(settings)
    _wait_until(start_at)
    started = time.perf_counter()
    data = load_arcticdem(GeoBox.from_bbox(bounds, "EPSG:3413", resolution=resolution), Path(data_dir), resolution)
    return int(data["datamask"].values.sum()), time.perf_counter() - started


def load_tcvis_region(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float],
                      start_at: float) -> tuple[int, float]:
    """`load_tcvis` of a lon/lat bbox (into a folder or an s3:// prefix) from `start_at` on; (valid pixels, seconds)."""
    import time

    from odc.geo.geobox import GeoBox

    from darts_aux import load_tcvis
    from darts_aux.products import TCVIS_PIXEL

    _configure(settings)
    _wait_until(start_at)
    started = time.perf_counter()
    data = load_tcvis(GeoBox.from_bbox(bounds, "EPSG:4326", resolution=TCVIS_PIXEL), data_dir)
    return int(data["valid"].values.sum()), time.perf_counter() - started


def fill_logging_to(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float],
                    resolution: int, log_path: str) -> None:
    """`load_arcticdem` of a bbox with darts_aux's log lines written (unbuffered) to `log_path`; the kill target."""
    import logging

    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem

    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("darts_aux")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    _configure(settings)
    load_arcticdem(GeoBox.from_bbox(bounds, "EPSG:3413", resolution=resolution), Path(data_dir), resolution)
