"""The local servers' subprocess configs: JSON round trip, tuples kept, and the one-argument command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from darts_aux.local._config import config_path
from darts_aux.local.earthengine.config import ServerConfig
from darts_aux.local.faults import ProxyConfig
from darts_aux.local.gateway import GatewayConfig


@pytest.mark.parametrize("config", [
    GatewayConfig("127.0.0.1", 8001, ("/runs/a", "/tiles"), "/runs/upstream.json", "/runs/gateway.log", 42),
    ProxyConfig("127.0.0.1", 8002, "http://127.0.0.1:9000", "/runs/proxy.log", {"kinds": ["5xx"], "rate": 0.5}),
    ServerConfig("127.0.0.1", 8003, "darts-aux-local", "/runs/ee.log"),
])
def test_a_dumped_config_loads_back_equal(config: GatewayConfig | ProxyConfig | ServerConfig, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config.dump(path)
    loaded = type(config).load(path)
    assert loaded == config
    assert loaded.public_base == f"http://127.0.0.1:{config.port}"


def test_gateway_file_dirs_come_back_as_a_tuple(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    GatewayConfig("127.0.0.1", 1, ("/a", "/b"), "/u", "/l").dump(path)
    assert GatewayConfig.load(path).file_dirs == ("/a", "/b")


def test_a_server_takes_exactly_one_config_argument() -> None:
    assert config_path(["/runs/gateway.json"], "darts_aux.local.gateway") == Path("/runs/gateway.json")
    with pytest.raises(SystemExit, match=r"usage: python -m darts_aux.local.gateway CONFIG.json"):
        config_path([], "darts_aux.local.gateway")
    with pytest.raises(SystemExit, match="usage"):
        config_path(["a.json", "b.json"], "darts_aux.local.gateway")
