"""Staged chunks: round trip, and the sweep that removes what killed runs left behind (and nothing else)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from darts_aux import staging


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_round_trip(tmp_path: Path) -> None:
    arrays = {"dem": np.arange(6, dtype="float32").reshape(2, 3), "datamask": np.ones((2, 3), "uint8")}
    path = staging.stage(tmp_path, "r0001c0002", arrays)
    back = staging.load(path)
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    assert f".{os.getpid()}." in path.name


def test_sweep_removes_orphans_of_dead_processes_after_an_hour(tmp_path: Path) -> None:
    mine = staging.stage(tmp_path, "r0001c0001", {"a": np.zeros(1)})
    orphan = mine.with_name(mine.name.replace(f".{os.getpid()}.", f".{_dead_pid()}."))
    young_orphan = orphan.with_name("r0002c0002" + orphan.name[len("r0001c0001"):])
    for path in (orphan, young_orphan):
        path.write_bytes(mine.read_bytes())
    for path in (mine, orphan):
        _age(path, staging.ORPHAN_SECONDS + 60)
    assert staging.sweep(tmp_path) == 1
    assert not orphan.exists() and mine.exists() and young_orphan.exists()


def test_sweep_removes_anything_older_than_a_day(tmp_path: Path) -> None:
    mine = staging.stage(tmp_path, "r0001c0001", {"a": np.zeros(1)})
    _age(mine, staging.STALE_SECONDS + 60)
    assert staging.sweep(tmp_path) == 1 and not mine.exists()
