"""The loopback gateway: static files with byte ranges under /files/, a STAC reverse proxy under /stac/.

Run as a subprocess: `python -m darts_aux.local.gateway CONFIG.json` (see `GatewayConfig`). Every request
to an upstream is appended as one JSON line to the request log, written before the last body byte is
sent, so a client that has its response also sees its log line.

rustac links always start at the server root (it drops any path of `--addr`), so the proxy rewrites
the upstream base URL in bodies and `Location` headers to `<public_base>/stac`.

Faults (5xx, resets, stalls, truncation) are injected in front of the gateway by
`darts_aux.local.faults.FaultProxy`, which can reset a connection before any answer (uvicorn turns an ASGI
app's failure before its response into a 500). `wrap_upstream` stays the hook for other per-upstream behaviour.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from darts_aux.local._asgi import RequestLog, parent_watched, request_headers, serve
from darts_aux.local._config import SubprocessConfig, config_path, pid_header

Upstream = Literal["stac", "files"]
HOP_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"})


@dataclass(frozen=True)
class GatewayConfig(SubprocessConfig):
    """Everything the gateway subprocess needs; written as JSON by the parent."""

    host: str
    port: int
    file_dirs: tuple[str, ...]
    """Directories served under /files/, searched in order (per-run files first, then the tile tree)."""
    upstream_file: str
    """JSON file `{"url": "http://127.0.0.1:PORT"}` naming the current STAC server; re-read when it changes."""
    log_path: str
    """Request log, one JSON object per line."""
    parent_pid: int = 0
    """Exit when this process is gone (0: do not watch)."""


class GatewayUrls:
    """The STAC API and file roots under a gateway's base URL, for the objects that start one."""

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` of the gateway."""
        raise NotImplementedError

    @property
    def stac_url(self) -> str:
        """STAC API root through the gateway (ends in `/stac/`; `/stac` works too)."""
        return f"{self.base_url}/stac/"

    @property
    def files_url(self) -> str:
        """Static file root through the gateway (ends in `/files/`); COGs follow PGC's S3 layout."""
        return f"{self.base_url}/files/"


def classify(path: str) -> Upstream | None:
    """Which upstream a request path goes to (None for the gateway's own endpoints)."""
    if path.startswith("/files/"):
        return "files"
    if path == "/stac" or path.startswith("/stac/"):
        return "stac"
    return None


def describe_request(scope: Scope) -> dict[str, Any] | None:
    """Log fields of a request to an upstream (others pass unlogged)."""
    upstream = classify(scope["path"])
    if upstream is None:
        return None
    return {"upstream": upstream, "range": request_headers(scope).get("range")}


class MultiDirStaticFiles(StaticFiles):
    """StaticFiles over several directories (first match wins); Range requests answered with 206."""

    def __init__(self, directories: Sequence[Path | str]) -> None:
        super().__init__(directory=str(directories[0]), check_dir=False)
        self.all_directories = [str(d) for d in directories]


class StacProxy:
    """ASGI reverse proxy from `/stac/...` to the current rustac server, rewriting its URLs."""

    def __init__(self, upstream_file: Path, public_stac_base: str) -> None:
        self.upstream_file = upstream_file
        self.public = public_stac_base
        self._mtime: int | None = None
        self._url = ""
        self._client: httpx.AsyncClient | None = None

    def upstream(self) -> str:
        """Base URL of the STAC server, re-read whenever the parent swaps it."""
        mtime = self.upstream_file.stat().st_mtime_ns
        if mtime != self._mtime:
            self._url = json.loads(self.upstream_file.read_text())["url"].rstrip("/")
            self._mtime = mtime
        return self._url

    @property
    def client(self) -> httpx.AsyncClient:
        """Shared HTTP client (created on first use, in the serving loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=60.0, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.forward(request)
        await response(scope, receive, send)

    async def forward(self, request: Request) -> Response:
        """Send the request to rustac and return its answer with URLs pointing through the gateway."""
        base = self.upstream()
        rest = request.url.path[len("/stac") :] or "/"
        query = request.url.query
        url = base + rest + (f"?{query}" if query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream = await self.client.request(request.method, url, content=await request.body(), headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"code": "BadGateway", "description": f"{type(exc).__name__}: {exc}"}, 502)
        pattern = re.compile(re.escape(base.encode()) + rb"(?![0-9])")
        body = pattern.sub(self.public.encode(), upstream.content)
        out_headers = {}
        if "content-type" in upstream.headers:
            out_headers["content-type"] = upstream.headers["content-type"]
        if "location" in upstream.headers:
            out_headers["location"] = pattern.sub(self.public.encode(), upstream.headers["location"].encode()).decode()
        return Response(body, status_code=upstream.status_code, headers=out_headers)


def wrap_upstream(name: Upstream, app: ASGIApp, config: GatewayConfig) -> ASGIApp:
    """The one place to add per-upstream behaviour; today: unchanged."""
    del name, config
    return app


def build_app(config: GatewayConfig) -> ASGIApp:
    """The gateway ASGI app: /healthz, /files/ (static, ranges), /stac (proxy), wrapped in the log."""
    proxy = StacProxy(Path(config.upstream_file), config.public_base + "/stac")
    files = wrap_upstream("files", MultiDirStaticFiles(config.file_dirs), config)
    stac = wrap_upstream("stac", proxy, config)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers=dict([pid_header()]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with parent_watched(config.parent_pid):
            try:
                yield
            finally:
                await proxy.aclose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Mount("/files", app=files),
            Route("/stac", stac),
            Mount("/stac", app=stac),
        ],
        lifespan=lifespan,
    )
    return RequestLog(app, Path(config.log_path), describe_request)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the gateway subprocess."""
    config = GatewayConfig.load(config_path(argv, "darts_aux.local.gateway"))
    serve(build_app(config), config.host, config.port)


if __name__ == "__main__":
    main()
