"""One retry policy (exponential backoff with jitter, transient errors only) shared by inline runs and Prefect tasks."""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import SourceDataError, SourceRequestError, TransientSourceError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Phrases with which GDAL/curl, requests and httpx report failures that a later attempt may not see.
_TRANSIENT_TEXT = re.compile(
    r"HTTP (response )?code:? ?(429|5\d\d)|\b(429|50[0-4])\b.*(error|status)|timed? ?out|timeout|"
    r"connection (reset|refused|aborted|closed)|reset by peer|transfer closed|"
    r"couldn't connect|could not connect|failed to connect|recv failure|send failure|"
    r"empty reply|truncated|unexpected end|IReadBlock failed|premature|connection broken|incomplete ?read|"
    r"remote end closed|remotedisconnected|server disconnected|peer closed connection",
    re.IGNORECASE,
)


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error, then what it was raised from or during, down the chain (each once)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind an error, looking through its causes (Earth Engine keeps it on __context__)."""
    for current in causes(error):
        for holder, attribute in (("response", "status_code"), ("resp", "status"), ("", "status_code")):
            target = getattr(current, holder, None) if holder else current
            status = getattr(target, attribute, None)
            if isinstance(status, int) or (isinstance(status, str) and status.isdigit()):
                return int(status)
    return None


def is_transient(error: BaseException) -> bool:
    """True for failures a retry can fix (timeouts, 429, 5xx, resets, truncated reads), never for bad input.

    Clients often wrap a transport failure in their own error (pystac-client's APIError, Earth Engine's
    ConnectionError, rasterio's error chain), so the whole chain of causes is looked at.
    """
    if isinstance(error, TransientSourceError):
        return True
    if isinstance(error, (SourceDataError, SourceRequestError, ValueError, TypeError, KeyError)):
        return False
    status = http_status(error)
    if status is not None:
        return status == 429 or status >= 500
    return any(_transient_link(link) for link in causes(error))


def _transient_link(error: BaseException) -> bool:
    """Whether one link of a chain is a transport failure: a timeout, a reset, a cut-short transfer."""
    if isinstance(error, (TimeoutError, ConnectionError, socket.timeout, TransientSourceError, *_transport_errors())):
        return True
    return bool(_TRANSIENT_TEXT.search(str(error)))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Transport error types of the HTTP clients in use (requests, urllib3, httpx, http.client)."""
    import http.client

    import httpx
    import requests
    import urllib3.exceptions

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError, httpx.TransportError,
            http.client.IncompleteRead, http.client.RemoteDisconnected)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    retries: int = 3
    base_delay: float = 1.0
    jitter: float = 0.5

    def delays(self) -> list[float]:
        """Nominal delay before each retry: base, 2·base, 4·base, …"""
        return [self.base_delay * 2**attempt for attempt in range(self.retries)]

    def jittered(self, delay: float) -> float:
        """A delay spread by ±jitter so that retrying clients do not synchronise."""
        return max(0.0, delay * (1 + random.uniform(-self.jitter, self.jitter)))

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run `fn`, retrying transient failures; the last failure propagates unchanged."""
        for attempt, delay in enumerate([*self.delays(), None]):
            try:
                return fn()
            except Exception as error:  # noqa: BLE001 - classified right below
                if delay is None or not is_transient(error):
                    raise
                pause = self.jittered(delay)
                log.warning("%s failed (%s); retry %d/%d in %.1f s", what, error, attempt + 1, self.retries, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")
