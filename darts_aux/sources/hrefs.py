"""Asset and item URLs from a catalog or tile index are untrusted input: only remote URLs are ever opened.

A catalog (or a tile-index row) could list a bare path, a `file://` URL, a GDAL `/vsi…` path or an `ftp://` URL,
and GDAL or httpx would read it: a file of the machine running the fill, or a server the catalog chose. So every
href is checked before anything opens it (`checked_href`), and a COG URL's redirects are followed hop by hop
without reading anything before GDAL opens it (`check_redirects`): GDAL's libcurl follows a redirect to `ftp://`
on its own, and no GDAL setting restricts that. httpx and requests follow redirects to http(s) only.
"""

from __future__ import annotations

import threading
from urllib.parse import urljoin, urlsplit

from ..errors import SourceDataError, TransientSourceError

REMOTE_SCHEMES = ("http", "https", "s3")
"""Schemes of the asset hrefs darts-aux opens: a COG over HTTP(S), or an object on S3."""
HTTP_SCHEMES = ("http", "https")
MAX_REDIRECTS = 10
_MAX_SHOWN = 120
_checked_lock = threading.Lock()
_checked: set[str] = set()
"""COG URLs whose redirects were checked in this process (bounded; see `check_redirects`)."""
_MAX_CHECKED = 4096


def checked_href(href: object, what: str, source: str, hint: str, schemes: tuple[str, ...] = REMOTE_SCHEMES) -> str:
    """`href` when it is an absolute URL of one of `schemes` with a host; SourceDataError otherwise.

    `what` names the href in the message ("STAC item X's 'dem' asset"), `hint` says what to do.
    """
    if isinstance(href, str) and _is_remote(href, schemes):
        return href
    listed = " or ".join(f"{scheme}://" for scheme in schemes)
    raise SourceDataError(f"{what} points at {shown(href)}, not an {listed} URL; darts-aux opens no local file "
                          f"and no other scheme from a catalog — {hint}.", source=source)


def _is_remote(href: str, schemes: tuple[str, ...]) -> bool:
    """An absolute URL of one of `schemes`, with a host, and no whitespace or control characters anywhere."""
    if not href or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in href):
        return False
    try:
        parts = urlsplit(href)
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.netloc) and bool(parts.hostname)


def shown(href: object) -> str:
    """The href for a message: quoted, cut short when long."""
    text = repr(href)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 1] + "…'"


def check_redirects(href: str, timeout: float, source: str, hint: str) -> None:
    """SourceDataError when the http(s) URL `href` redirects (hop by hop) to anything but http(s)://.

    HEAD requests only, nothing read; a transport failure is TransientSourceError (retried like any request).
    A URL checked once is not checked again by this process: its server could still redirect elsewhere later,
    but not to a scheme libcurl refuses (file://); this check keeps catalogs from sending reads to ftp:// hosts.
    """
    if urlsplit(href).scheme.lower() not in HTTP_SCHEMES or href in _checked:
        return
    url = href
    for _ in range(MAX_REDIRECTS):
        target = _redirect_of(url, timeout, source)
        if target is None:
            _remember(href)
            return
        url = checked_href(target, f"{href} redirects to a URL that", source, hint, HTTP_SCHEMES)
    raise SourceDataError(f"{href} redirects more than {MAX_REDIRECTS} times; {hint}.", source=source)


def _redirect_of(url: str, timeout: float, source: str) -> str | None:
    """Where `url` redirects to (absolute), or None when its answer is not a redirect."""
    import httpx

    try:
        answer = httpx.head(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as error:
        raise TransientSourceError(f"checking {url} failed: {type(error).__name__}: {error}", source=source) from error
    location = answer.headers.get("location")
    if not answer.is_redirect or location is None:
        return None
    return urljoin(url, location)


def _remember(href: str) -> None:
    """Note a checked URL (the set is emptied when full: a bound, not a cache policy)."""
    with _checked_lock:
        if len(_checked) >= _MAX_CHECKED:
            _checked.clear()
        _checked.add(href)
