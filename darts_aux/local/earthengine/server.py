"""The loopback Earth Engine REST server (starlette + uvicorn), run as `python -m ….server CONFIG.json`.

Endpoints the unmodified `earthengine-api` client uses:
  GET  /$discovery/rest?version=v1                   discovery document (root URL = this server)
  GET  /v1/projects/{project}/algorithms             the algorithm signatures the client builds its API from
  POST /v1/projects/{project}/image:computePixels    evaluate the expression on the grid, answer an .npy file
Admin endpoints for the parent process (not logged):
  GET/POST/DELETE /_admin/faults   read / partially update / clear the fault settings (see `faults`)
  GET /_admin/stats, POST /_admin/reset   counters (max concurrent computePixels ever seen) and their reset
  GET /healthz
Every other request is appended as one JSON line to the request log before its last body byte is sent.
A CONNECT request (a client using this server as its HTTPS proxy) is refused with 403 at once, so
`https_proxy=<this server>` makes the client's fetch of its deprecation catalog fail fast and offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from darts_aux.local._asgi import RequestLog, parent_watched, serve
from darts_aux.local._config import config_path, pid_header
from darts_aux.local.earthengine.config import ServerConfig
from darts_aux.local.earthengine.errors import DEFAULT_MESSAGES, EEError, error_body, invalid
from darts_aux.local.earthengine.expression import Raster, evaluate_image, render
from darts_aux.local.earthengine.faults import WRONG_DTYPE, WRONG_SHAPE, Fault, FaultInjector
from darts_aux.local.earthengine.grid import PixelGrid

PACKAGE_DIR = Path(__file__).resolve().parent
DISCOVERY_PATH = PACKAGE_DIR / "discovery.json"
ALGORITHMS_PATH = PACKAGE_DIR / "algorithms.json"
ROOT_PLACEHOLDER = "{ROOT_URL}"
LOG_KEY = "darts_aux.ee_log"
"""Scope key of the request's log record, so endpoints can add fields to it."""


class ServerState:
    """Mutable server state; touched only from the event loop, so no locks are needed."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = FaultInjector()
        self.in_flight = 0
        """Admitted computePixels requests whose answer is not completely sent yet."""
        self.max_in_flight_seen = 0
        self.counts: dict[str, int] = {"compute_pixels": 0, "rejected_by_cap": 0, "faults": 0}

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset."""
        return {"in_flight": self.in_flight, "max_in_flight_seen": self.max_in_flight_seen, **self.counts}

    def reset(self) -> None:
        """Forget the counters (the maximum restarts from what is in flight now)."""
        self.max_in_flight_seen = self.in_flight
        self.counts = dict.fromkeys(self.counts, 0)


def google_error(status: int, message: str | None = None) -> JSONResponse:
    """A JSON error response in Google's shape."""
    return JSONResponse(error_body(status, message), status_code=status)


def describe_request(scope: Scope) -> dict[str, Any] | None:
    """Every request is logged except admin calls and health checks."""
    path = scope["path"]
    return None if path.startswith("/_admin") or path == "/healthz" else {}


class RefuseConnect:
    """ASGI middleware: 403 for CONNECT (this server is no HTTPS proxy; clients pointed at it fail fast)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "CONNECT":
            await PlainTextResponse("the local Earth Engine is not an HTTPS proxy", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ComputePixels:
    """`POST /v1/projects/{project}/image:computePixels` as an ASGI app, so it counts until the body is sent."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        record: dict[str, Any] = scope.setdefault(LOG_KEY, {})
        request = Request(scope, receive)
        record["in_flight"] = state.in_flight
        state.counts["compute_pixels"] += 1
        denied = _project_error(request.path_params.get("project", ""), state.config.project)
        if denied is not None:
            await denied(scope, receive, send)
            return
        if state.faults.over_cap(state.in_flight):
            state.counts["rejected_by_cap"] += 1
            record["fault"] = "cap"
            await google_error(429, DEFAULT_MESSAGES[429])(scope, receive, send)
            return
        state.in_flight += 1
        state.max_in_flight_seen = max(state.max_in_flight_seen, state.in_flight)
        record["concurrent"] = state.in_flight
        try:
            await self._answer(request, record, scope, receive, send)
        finally:
            state.in_flight -= 1

    async def _answer(
        self, request: Request, record: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Injected fault or the real answer, sent no sooner than `delay` seconds after the request arrived."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        answer_at = arrived + self.state.faults.settings.delay
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            dims = body.get("grid", {}).get("dimensions", {}) if isinstance(body.get("grid"), dict) else {}
            record["grid"] = {"width": dims.get("width"), "height": dims.get("height")} if dims else None
            record["band_ids"] = body.get("bandIds")
        fault, origin = self.state.faults.draw()
        if fault is not None:
            self.state.counts["faults"] += 1
            record["fault"] = origin
            if fault.corrupt is None:
                await _sleep_until(answer_at)
                await _fault_response(fault, scope, receive, send)
                return
            record["corrupt"] = fault.corrupt
        try:
            data = await self._compute(body, fault.corrupt if fault is not None else None)
        except EEError as exc:
            record["message"] = exc.message
            await _sleep_until(answer_at)
            await JSONResponse(exc.body(), status_code=exc.status)(scope, receive, send)
            return
        record["ready_after"] = round(loop.time() - arrived, 6)  # the answer was computed this long after arrival
        await _sleep_until(answer_at)
        await Response(data, media_type="application/octet-stream")(scope, receive, send)

    async def _compute(self, body: Any, corrupt: str | None = None) -> bytes:
        """Validate the request, check the size limit, compute the pixels (in a worker thread), encode NPY."""
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received.")
        unsupported = sorted(set(body) - {"expression", "fileFormat", "grid", "bandIds", "workloadTag"})
        if unsupported:
            raise invalid(f"The local Earth Engine does not support computePixels fields {unsupported}.")
        if body.get("fileFormat") != "NPY":
            raise invalid(f"The local Earth Engine only returns fileFormat NPY, not {body.get('fileFormat')!r}.")
        grid = PixelGrid.from_request(body.get("grid"))
        band_ids = body.get("bandIds")
        if band_ids is not None and not (isinstance(band_ids, list) and all(isinstance(b, str) for b in band_ids)):
            raise invalid("bandIds must be a list of band names.")
        bands = evaluate_image(body.get("expression"), band_ids)
        grid.check_size([b.dtype.itemsize for b in bands])
        try:
            return await run_in_threadpool(_npy_bytes, bands, grid, corrupt)
        except Exception as exc:  # a bug here must still answer in Google's shape, as a 500
            raise EEError(500, f"Internal error: {type(exc).__name__}: {exc}") from exc


async def _sleep_until(when: float) -> None:
    """Wait until the event loop's clock reads `when` (at once if it already has)."""
    remaining = when - asyncio.get_running_loop().time()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _npy_bytes(bands: Sequence[Any], grid: PixelGrid, corrupt: str | None = None) -> bytes:
    """The structured array as an .npy file (made wrong on purpose when `corrupt` says how)."""
    array = corrupted(render(bands, Raster(grid.x(), grid.y(), grid.crs)), corrupt)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def corrupted(array: np.ndarray, corrupt: str | None) -> np.ndarray:
    """The answer one row short (`wrong-shape`), with int16 bands (`wrong-dtype`), or unchanged."""
    if corrupt == WRONG_SHAPE:
        return array[:-1]
    if corrupt == WRONG_DTYPE:
        return array.astype([(name, "<i2") for name in array.dtype.names or ()])
    return array


async def _fault_response(fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
    """Send an injected fault: a Google JSON error, or half of a fake body and then nothing."""
    if not fault.truncate:
        await google_error(fault.status, fault.message)(scope, receive, send)
        return
    body = b"\x93NUMPY" + b"\0" * 4090
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    # Returning without the final body message makes uvicorn close the connection mid-body.


def _project_error(project: str, expected: str) -> JSONResponse | None:
    """403 PERMISSION_DENIED for a project other than the configured one."""
    if project == expected:
        return None
    return google_error(
        403,
        f"Caller does not have required permission to use project {project}. Grant the caller the "
        "roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use "
        f"permission (the local Earth Engine serves project {expected!r} only).",
    )


def build_app(config: ServerConfig) -> ASGIApp:
    """The server's ASGI app."""
    state = ServerState(config)
    discovery = DISCOVERY_PATH.read_text(encoding="utf-8")
    algorithms = ALGORITHMS_PATH.read_bytes()

    async def get_discovery(request: Request) -> Response:
        version = request.query_params.get("version", "v1")
        if version != "v1":
            return google_error(404, f"Discovery document for version {version!r} not found.")
        root = str(request.base_url).rstrip("/")
        return Response(discovery.replace(ROOT_PLACEHOLDER, root), media_type="application/json")

    async def list_algorithms(request: Request) -> Response:
        denied = _project_error(request.path_params["project"], config.project)
        return denied or Response(algorithms, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers=dict([pid_header()]))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                state.faults.configure(changes)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        elif request.method == "DELETE":
            state.faults.clear()
        return JSONResponse(state.faults.state())

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.stats())

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "Internal error."
        return google_error(code, f"{message}: {request.method} {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with parent_watched(config.parent_pid):
            yield

    app = Starlette(
        routes=[
            Route("/$discovery/rest", get_discovery, methods=["GET"]),
            Route("/v1/projects/{project}/algorithms", list_algorithms, methods=["GET"]),
            Route("/v1/projects/{project}/image:computePixels", ComputePixels(state), methods=["POST"]),
            Route("/healthz", healthz),
            Route("/_admin/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_admin/stats", stats, methods=["GET"]),
            Route("/_admin/reset", reset, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    return RequestLog(RefuseConnect(app), Path(config.log_path), describe_request, LOG_KEY)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the server subprocess."""
    config = ServerConfig.load(config_path(argv, "darts_aux.local.earthengine.server"))
    serve(build_app(config), config.host, config.port)


if __name__ == "__main__":
    main()
