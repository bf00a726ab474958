"""An unreachable source: a typed error naming the setting, and nothing written (bad input: test_bad_input.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.errors import SourceUnavailableError
from darts_aux.settings import reload_settings

INSIDE = GeoBox.from_bbox((650_000, 3_140_000, 660_000, 3_150_000), "EPSG:3413", resolution=32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
