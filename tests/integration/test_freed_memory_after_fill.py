"""Every fill hands the memory it freed back to the system when it ends, in-process or as a flow; reads do not."""

from __future__ import annotations

import gc
import logging
import re
import weakref
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

import darts_aux.fill
from darts_aux import load_arcticdem
from darts_aux.grid import roi_window
from darts_aux.local import LocalCatalog
from darts_aux.products import arcticdem

from .conftest import formula_oracle

ROI = GeoBox.from_bbox((590_000, 3_090_000, 630_000, 3_130_000), "EPSG:3413", resolution=32)
RELEASED = re.compile(r"after the arcticdem-32m fill( flow)?: returned (\d+) MB of freed memory to the system "
                      r"\((\d+) MB resident now\)")


def _released(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    found = (RELEASED.fullmatch(r.getMessage()) for r in caplog.records if r.name == "darts_aux.freed_memory")
    return [match for match in found if match]


def _load_and_check(catalog: LocalCatalog, data_dir: Path) -> None:
    ds = load_arcticdem(ROI, data_dir, 32)
    dem, mask = formula_oracle(catalog, 32, roi_window(ROI, arcticdem(32).extent))
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)


def test_an_inline_fill_releases_freed_memory_after_its_last_commit_and_a_warm_load_does_not(
    use_catalog: LocalCatalog, inline: None, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="darts_aux"):
        _load_and_check(use_catalog, tmp_path)
        messages = [r.getMessage() for r in caplog.records]
        [released] = _released(caplog)
        assert released.group(1) is None, "the in-process fill, not the flow"
        committed = [i for i, m in enumerate(messages) if re.match(r"chunk r\d+c\d+ committed", m)]
        assert len(committed) == 4 and messages.index(released.group(0)) > max(committed), "after the last commit"
        caplog.clear()
        _load_and_check(use_catalog, tmp_path)  # warm: nothing is filled, nothing to release
        assert not _released(caplog)


def test_no_chunk_pixels_are_still_held_when_the_fill_hands_memory_back(
    use_catalog: LocalCatalog, inline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every chunk's mosaic is garbage once committed: a fill of a scene's hundreds of chunks must not hold them all."""
    downloaded: list[weakref.ref] = []
    alive_at_release: list[int] = []
    download, release = darts_aux.fill.download, darts_aux.fill.release_freed_memory

    def tracked_download(*args: object, **kwargs: object) -> darts_aux.fill.StagedChunk:
        staged = download(*args, **kwargs)  # type: ignore[arg-type]
        assert staged.pixels is not None, "an in-process fill holds the mosaic in memory"
        downloaded.extend(weakref.ref(array) for array in staged.pixels.values())
        return staged

    def counting_release(after: str) -> int | None:
        gc.collect()
        alive_at_release.append(sum(ref() is not None for ref in downloaded))
        return release(after)

    monkeypatch.setattr(darts_aux.fill, "download", tracked_download)
    monkeypatch.setattr(darts_aux.fill, "release_freed_memory", counting_release)
    _load_and_check(use_catalog, tmp_path)
    assert len(downloaded) == 4 * 2, "four chunks, dem and datamask each"
    assert alive_at_release == [0]


class Collected(logging.Handler):
    """The records of one logger, kept on that logger itself: Prefect's run logging replaces the root's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_fill_flow_releases_freed_memory_when_it_ends(
    use_catalog: LocalCatalog, forget_new_flow_runs: None, tmp_path: Path,
) -> None:
    logger, handler = logging.getLogger("darts_aux.freed_memory"), Collected()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        _load_and_check(use_catalog, tmp_path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [released] = [match for match in map(RELEASED.fullmatch, handler.messages) if match]
    assert released.group(1) == " flow"
