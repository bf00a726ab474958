"""One retry policy (exponential backoff with jitter, transient errors only) shared by inline runs and Prefect tasks.

Each request is retried by one layer only: the policy around that request (or GDAL's own retries, for the range
requests of a COG). A failure that layer gave up on is marked as such (`gave_up_on`), and every layer above it
(a chunk's download, a Prefect task) passes it on instead of repeating the same requests: `should_retry` is False
for it. Only a transient failure no layer has retried yet is retried by the layer it reaches.
"""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import SourceDataError, SourceRequestError, SourceUnavailableError, TransientSourceError

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
log = logging.getLogger(__name__)
_GAVE_UP = "_darts_aux_retries_used"
"""Attribute set on an error whose retries a layer already used up."""

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


def gave_up_on(error: E) -> E:
    """Mark `error` as one whose retries are used up (no layer above retries it again); returns it."""
    try:
        setattr(error, _GAVE_UP, True)
    except AttributeError:  # an exception type without a __dict__: its wrapper gets marked instead
        pass
    return error


def retries_used(error: BaseException) -> bool:
    """Whether a layer below already retried this failure to the end (it or a link of its chain is marked,
    or is a SourceUnavailableError, which darts-aux raises only once the retries are used up)."""
    return any(getattr(link, _GAVE_UP, False) or isinstance(link, SourceUnavailableError) for link in causes(error))


def should_retry(error: BaseException) -> bool:
    """Whether the layer this failure reaches should retry it: transient, and not already retried below."""
    return is_transient(error) and not retries_used(error)


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
    """How often and how patiently a transient failure is retried.

    A request that keeps failing is sent `retries + 1` times, then the failure propagates, marked as retried
    (see `gave_up_on`): no layer above sends it again. So a source that stays down fails within
    `give_up_seconds(timeout)`: the retry delays (at most `(2**retries - 1) * base_delay * (1 + jitter)`) plus
    `retries + 1` request timeouts; a refused connection fails at once, so it takes only the delays. With the
    defaults (3 retries, 1 s, jitter 0.5, 30 s timeout): 4 requests, at most 10.5 s of delays, 130.5 s in all.
    """

    retries: int = 3
    base_delay: float = 1.0
    jitter: float = 0.5

    def delays(self) -> list[float]:
        """Nominal delay before each retry: base, 2·base, 4·base, …"""
        return [self.base_delay * 2**attempt for attempt in range(self.retries)]

    def jittered(self, delay: float) -> float:
        """A delay spread by ±jitter so that retrying clients do not synchronise."""
        return max(0.0, delay * (1 + random.uniform(-self.jitter, self.jitter)))

    def give_up_seconds(self, timeout: float) -> float:
        """The longest a request that keeps failing takes to fail for good: every attempt timing out after
        `timeout` seconds, every delay at its jittered maximum."""
        return (self.retries + 1) * timeout + sum(self.delays()) * (1 + self.jitter)

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run `fn`, retrying transient failures no layer below has retried yet.

        The last failure propagates unchanged, marked as retried when it was transient (see `gave_up_on`).
        """
        for attempt, delay in enumerate([*self.delays(), None]):
            try:
                return fn()
            except Exception as error:
                if not should_retry(error):
                    raise
                if delay is None:
                    gave_up_on(error)
                    raise
                pause = self.jittered(delay)
                log.warning("%s failed (%s); retry %d/%d in %.1f s", what, error, attempt + 1, self.retries, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")
