"""Whether the Prefect API a fill would run through answers, asked once and quickly before the fill starts.

Prefect's client retries an unreachable API for many seconds and then fails with a long traceback; one short
request to the API's health endpoint tells the same in milliseconds (a closed port) or a few seconds (a host
that does not answer), so the caller gets one typed error that says what to do.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeGuard

from .errors import DartsAuxError, OrchestratorUnavailableError

if TYPE_CHECKING:
    import httpx

PROBE_SECONDS = 5.0
"""How long the health request may take before the API counts as unreachable."""
_PREFECT_UNREACHABLE = "Failed to reach API"
"""How Prefect's client words an API it could not reach (a RuntimeError)."""


def prefect_api_url() -> str | None:
    """The Prefect API fills would use: PREFECT_API_URL, else Prefect's own setting (None: an ephemeral server)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def check_prefect_api(url: str | None, timeout: float = PROBE_SECONDS) -> None:
    """Raise OrchestratorUnavailableError when the Prefect API at `url` does not answer (any HTTP answer will do).

    `url` None (no API configured) passes: Prefect then starts its own ephemeral server in this process.
    """
    import httpx

    if url is None:
        return
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.TransportError as error:
        raise unavailable(url, _reason(error, timeout)) from None


def unavailable(url: str, reason: str) -> OrchestratorUnavailableError:
    """The error for an API that does not answer: start it, or run fills in-process."""
    return OrchestratorUnavailableError(
        f"the Prefect API at {url} does not answer ({reason}); start it with 'prefect server start' (or point "
        f"PREFECT_API_URL at a running one), or run fills in-process with DARTS_AUX_ORCHESTRATOR=inline."
    )


def as_unavailable(error: BaseException, url: str | None) -> OrchestratorUnavailableError | None:
    """The error a fill through Prefect raised, as OrchestratorUnavailableError when the API stopped answering."""
    if url is None or isinstance(error, DartsAuxError):
        return None
    for link in _chain(error):
        prefect_says = isinstance(link, RuntimeError) and str(link).startswith(_PREFECT_UNREACHABLE)
        if prefect_says or (_is_connect_error(link) and _request_url(link).startswith(url.rstrip("/"))):
            return unavailable(url, "it stopped answering during the fill")
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """The error and the errors it was raised from or during, innermost last."""
    seen: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in seen:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def _is_connect_error(error: BaseException) -> TypeGuard[httpx.TransportError]:
    """True for httpx's failure to connect (refused, unreachable, or no connection within the timeout)."""
    import httpx

    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))


def _request_url(error: httpx.TransportError) -> str:
    """The URL of the request an httpx error belongs to ('' when it has none)."""
    try:
        return str(error.request.url)
    except RuntimeError:  # httpx raises RuntimeError for an error without its request
        return ""


def _reason(error: BaseException, timeout: float) -> str:
    """A short reason: 'connection refused', 'no answer within 5 s', else the error's first line."""
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return "connection refused" if "refused" in text.lower() else text
