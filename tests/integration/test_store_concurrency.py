"""Processes sharing one cube: creation races and same-chunk merges lose nothing (spawned processes)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.products import arcticdem
from darts_aux.store import Cube

from . import _workers


def test_two_processes_creating_the_cube_at_once_both_succeed(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        tips = pool.map(_workers.create_cube, [str(tmp_path)] * 2)
    assert tips[0] == tips[1]
    history = list(Cube.open(tmp_path, arcticdem(32)).history())
    assert [s.message for s in history].count("create arcticdem-32m cube") == 1


def test_writers_of_the_same_chunk_keep_each_others_pixels(tmp_path: Path) -> None:
    rounds = 6
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        made = pool.starmap(_workers.write_half, [(str(tmp_path), True, rounds), (str(tmp_path), False, rounds)])
    assert made == [rounds, rounds]
    window = ChunkGrid(arcticdem(32)).window(ChunkId(5, 5))
    dem = Cube.open(tmp_path, arcticdem(32)).read(window)["dem"]
    cols = window.shape[1]
    written = dem[: rounds * 10]
    np.testing.assert_array_equal(written[:, : cols // 2], 1.0)
    np.testing.assert_array_equal(written[:, cols // 2 :], 2.0)
    assert np.isnan(dem[rounds * 10 :]).all()
    commits = [s for s in Cube.open(tmp_path, arcticdem(32)).history() if s.message.startswith("half")]
    assert len(commits) == 2 * rounds
