"""pystac-client's HTTP layer with the retry policy applied to each request (landing page, every search page)."""

from __future__ import annotations

from typing import Any

from pystac_client.stac_api_io import StacApiIO

from ..retry import RetryPolicy


class RetryingStacApiIO(StacApiIO):
    """StacApiIO whose requests are retried one by one on transient failures (a search is several requests)."""

    def __init__(self, policy: RetryPolicy, timeout: float) -> None:
        super().__init__(timeout=timeout, max_retries=0)  # urllib3's retries off: the policy decides
        self.policy = policy

    def request(self, href: str, method: str | None = None, headers: dict[str, str] | None = None,
                parameters: dict[str, Any] | None = None) -> str:
        """One request, retried while it fails transiently (timeouts, 429, 5xx, resets, cut-short bodies)."""
        return self.policy.call(lambda: super(RetryingStacApiIO, self).request(href, method, headers, parameters),
                                what=f"STAC {method or 'GET'} {href}")
