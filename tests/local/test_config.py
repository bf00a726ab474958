"""The local servers' subprocess configs: JSON round trip, tuples kept, and the one-argument command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darts_aux.local._config import SubprocessConfig, config_path
from darts_aux.local._procs import LOOPBACK, free_port
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
    assert loaded == config  # the gateway's file_dirs too: a tuple again, not the JSON list
    assert loaded.public_base == f"http://127.0.0.1:{config.port}"


def test_a_server_takes_exactly_one_config_argument() -> None:
    assert config_path(["/runs/gateway.json"], "darts_aux.local.gateway") == Path("/runs/gateway.json")
    with pytest.raises(SystemExit, match=r"usage: python -m darts_aux.local.gateway CONFIG.json"):
        config_path([], "darts_aux.local.gateway")
    with pytest.raises(SystemExit, match="usage"):
        config_path(["a.json", "b.json"], "darts_aux.local.gateway")


def _config_for(module: str, tmp_path: Path, parent_pid: int) -> SubprocessConfig:
    """A config for one of the local servers on a free loopback port, watching `parent_pid`."""
    port, log = free_port(), str(tmp_path / "requests.jsonl")
    if module == "darts_aux.local.gateway":
        return GatewayConfig(LOOPBACK, port, (str(tmp_path),), str(tmp_path / "upstream.json"), log, parent_pid)
    if module == "darts_aux.local.faultproxy":
        return ProxyConfig(LOOPBACK, port, "http://127.0.0.1:9", log, {}, parent_pid)
    return ServerConfig(LOOPBACK, port, "darts-aux-local", log, parent_pid)


SERVER_MODULES = ["darts_aux.local.gateway", "darts_aux.local.faultproxy", "darts_aux.local.earthengine.server"]


@pytest.mark.parametrize("module", SERVER_MODULES)
def test_a_server_ends_once_the_parent_it_watches_is_not_its_parent(module: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    _config_for(module, tmp_path, os.getpid()).dump(path)
    kept = subprocess.Popen([sys.executable, "-m", module, str(path)], stderr=subprocess.PIPE)
    try:
        time.sleep(2.5)  # the watcher looks once a second
        assert kept.poll() is None, kept.stderr.read().decode() if kept.stderr else ""
    finally:
        kept.terminate()
        kept.wait(10)
    other = tmp_path / "other.json"
    _config_for(module, tmp_path, 1).dump(other)  # pid 1 is not this process: as if the parent were gone
    started = time.monotonic()
    orphan = subprocess.Popen([sys.executable, "-m", module, str(other)], stderr=subprocess.PIPE)
    try:
        code = orphan.wait(15)
    finally:
        orphan.kill()
    assert code in (0, -signal.SIGTERM), orphan.stderr.read().decode() if orphan.stderr else ""
    assert time.monotonic() - started >= 1.0, "it ran until the watcher's first look"
