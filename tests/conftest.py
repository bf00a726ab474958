"""Test-wide setup: Prefect offline and isolated, network guarded, settings re-read per test."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="darts-aux-prefect-"))
for key, value in {
    "PREFECT_HOME": str(_PREFECT_HOME),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402

from darts_aux.settings import reload_settings  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    """Refuse any connection that leaves the machine: tests talk to loopback servers only."""
    host = address[0] if isinstance(address, tuple) else None
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (None, "localhost") and not (
        str(host).startswith("127.") or str(host) in ("::1", "0:0:0:0:0:0:0:1")
    ):
        raise ConnectionRefusedError(f"test network guard: connection to {address!r} refused (loopback only)")
    _real_connect(self, address)


_real_getaddrinfo = socket.getaddrinfo


def _loopback_names_only(host: object, *args: object, **kwargs: object) -> object:
    """Refuse DNS lookups of anything but loopback names: no query leaves the machine (nor hangs on it)."""
    name = host.decode() if isinstance(host, bytes) else host
    if name not in (None, "localhost", "::1") and not str(name).startswith("127."):
        raise socket.gaierror(socket.EAI_NONAME, f"test network guard: no DNS lookup of {name!r} (loopback only)")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]
socket.getaddrinfo = _loopback_names_only  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts from default settings with its own data dir and no real-service URLs reachable."""
    for key in list(os.environ):
        if key.startswith("DARTS_AUX_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DARTS_AUX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DARTS_AUX_RETRY_DELAY_SECONDS", "0.05")
    reload_settings()
    yield
    reload_settings()
