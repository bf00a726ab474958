"""Bad input and unreachable sources: a typed error that says what to do, and nothing written."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from darts_aux import DartsAuxError, load_arcticdem
from darts_aux.errors import (
    DataDirError,
    EmptyRegionError,
    InvalidBufferError,
    InvalidResolutionError,
    OutsideExtentError,
    SourceUnavailableError,
)
from darts_aux.settings import reload_settings

INSIDE = GeoBox.from_bbox((650_000, 3_140_000, 660_000, 3_150_000), "EPSG:3413", resolution=32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "hint"),
    [
        ({"resolution": 5}, InvalidResolutionError, "use one of 2, 10, 32"),
        ({"buffer": -1}, InvalidBufferError, "non-negative"),
        ({"buffer": 2.5}, InvalidBufferError, "whole number"),
        ({"geobox": GeoBox((0, 0), Affine(32, 0, 650_000, 0, -32, 3_150_000), "EPSG:3413")}, EmptyRegionError, "non-empty"),
        ({"geobox": GeoBox.from_bbox((6e6, 6e6, 6.01e6, 6.01e6), "EPSG:3413", resolution=32)}, OutsideExtentError,
         "overlaps"),
        ({"data_dir": 42}, DataDirError, "must be a path"),
    ],
    ids=["resolution-5", "negative-buffer", "fractional-buffer", "empty-geobox", "outside-extent", "data-dir-int"],
)
def test_bad_input_raises_typed_error_and_writes_nothing(kwargs: dict, error: type[Exception], hint: str,
                                                         tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"
    arguments = {"geobox": INSIDE, "data_dir": data_dir, "resolution": 32, "buffer": 0} | kwargs
    with pytest.raises(error, match=hint) as raised:
        load_arcticdem(**arguments)
    assert isinstance(raised.value, DartsAuxError)
    assert not data_dir.exists()


def test_data_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        load_arcticdem(INSIDE, occupied, 32)
    assert occupied.read_text() == "x"


def test_unreachable_stac_api_names_the_setting_and_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path, inline: None) -> None:
    monkeypatch.setenv("DARTS_AUX_STAC_URL", f"http://127.0.0.1:{_free_port()}/api/v1/")
    monkeypatch.setenv("DARTS_AUX_RETRIES", "1")
    reload_settings()
    data_dir = tmp_path / "never-created"
    with pytest.raises(SourceUnavailableError, match="DARTS_AUX_STAC_URL") as raised:
        load_arcticdem(INSIDE, data_dir, 32)
    assert raised.value.source == "stac"
    assert not data_dir.exists()
