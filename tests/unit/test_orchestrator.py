"""A Prefect API that does not answer is found by one quick request, with one error that says what to do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from darts_aux.errors import ConfigurationError, OrchestratorUnavailableError, SourceUnavailableError
from darts_aux.orchestrator import as_unavailable, check_prefect_api


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Health(BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:
        _Health.paths.append(self.path)
        self.send_response(404)  # any answer means the API is there
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listening() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Health.paths.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_a_closed_port_fails_at_once_with_what_to_do() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    started = time.perf_counter()
    with pytest.raises(OrchestratorUnavailableError) as caught:
        check_prefect_api(url)
    assert time.perf_counter() - started < 2
    message = str(caught.value)
    assert message.startswith(f"the Prefect API at {url} does not answer (connection refused); ")
    assert "'prefect server start'" in message and "DARTS_AUX_ORCHESTRATOR=inline" in message
    assert "\n" not in message and isinstance(caught.value, ConfigurationError)


def test_an_api_that_answers_passes_whatever_it_answers(listening: str) -> None:
    check_prefect_api(listening)
    check_prefect_api(listening + "/")
    assert _Health.paths == ["/api/health", "/api/health"]


def test_no_api_configured_asks_nothing() -> None:
    check_prefect_api(None)  # Prefect would start an ephemeral server in the process: nothing to ask


def test_errors_of_a_fill_through_prefect_are_told_apart() -> None:
    url = "http://127.0.0.1:4200/api"

    def raised(outer: BaseException, inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as error:
                raise outer from error
        except BaseException as error:  # noqa: BLE001 - the chained error itself is what is tested
            return error

    refused = httpx.ConnectError("refused", request=httpx.Request("POST", f"{url}/flow_runs/"))
    elsewhere = httpx.ConnectError("refused", request=httpx.Request("GET", "http://127.0.0.1:9/stac/search"))
    assert isinstance(as_unavailable(RuntimeError(f"Failed to reach API at {url}/"), url), OrchestratorUnavailableError)
    assert isinstance(as_unavailable(raised(ValueError("x"), refused), url), OrchestratorUnavailableError)
    assert as_unavailable(raised(ValueError("x"), elsewhere), url) is None, "a source's failure is not Prefect's"
    assert as_unavailable(SourceUnavailableError("down", source="stac"), url) is None
    assert as_unavailable(ValueError("bad"), url) is None
    assert as_unavailable(RuntimeError(f"Failed to reach API at {url}/"), None) is None
