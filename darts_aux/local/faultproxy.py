"""The fault-injecting reverse proxy server (asyncio + h11), run as `python -m darts_aux.local.faultproxy CONFIG.json`.

A plain asyncio server rather than an ASGI app: a fault must be able to reset the TCP connection before any
answer, which an ASGI server turns into a polite 500. One request per connection (`Connection: close`),
so each injected fault hits exactly one request. See `darts_aux.local.faults` for the fault kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import h11
import httpx

from darts_aux.local._asgi import parent_watched
from darts_aux.local._config import config_path, pid_header
from darts_aux.local.faults import ADMIN_PREFIX, Draw, FaultInjector, FaultPlan, ProxyConfig

HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                         "trailer", "upgrade", "content-length", "accept-encoding", "content-encoding"})
TEXT_TYPES = re.compile(r"json|text/|xml|javascript", re.IGNORECASE)
READ_SIZE = 65536


@dataclass(frozen=True)
class Incoming:
    """One request as read from a client."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """A request header's value (first one), by case-insensitive name."""
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(frozen=True)
class Answer:
    """A response to send: status, headers (without framing headers) and the whole body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    declared: int | None = None
    """Content-Length to declare when it is not the body's (the answer to a HEAD request)."""

    @property
    def length(self) -> int:
        return len(self.body) if self.declared is None else self.declared


class Connection:
    """One client connection: h11 framing over an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)

    async def read_request(self) -> Incoming | None:
        """The next complete request, or None when the client closed the connection first."""
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(READ_SIZE))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
                return Incoming(request.method.decode("ascii"), request.target.decode("latin-1"), headers,
                                bytes(body))
            else:
                return None

    async def send(self, answer: Answer, body_bytes: int | None = None, *, head: bool = False) -> None:
        """Send `answer` with its full Content-Length but only `body_bytes` of the body (all when None)."""
        headers = [*answer.headers, ("content-length", str(answer.length)), ("connection", "close")]
        reason = HTTPStatus(answer.status).phrase.encode() if answer.status in HTTPStatus._value2member_map_ else b""
        self.writer.write(self.h11.send(h11.Response(status_code=answer.status, headers=headers, reason=reason)) or b"")
        part = b"" if head else answer.body if body_bytes is None else answer.body[:body_bytes]
        if part:
            self.writer.write(self.h11.send(h11.Data(data=part)) or b"")
        if body_bytes is None:
            self.writer.write(self.h11.send(h11.EndOfMessage()) or b"")
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the client sees 'connection reset by peer'."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def client_hung_up_within(self, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as the client closes its side (it gave up waiting)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout=seconds)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    async def close(self) -> None:
        """Close the connection politely (FIN), ignoring a client that is already gone."""
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class ProxyServer:
    """Forwards requests to the upstream, injects the planned faults and logs every proxied request."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.upstream = config.upstream.rstrip("/")
        self.public = config.public_base
        self.injector = FaultInjector.from_plan(FaultPlan.from_json(config.plan))
        self.log_path = Path(config.log_path)
        self.pattern = re.compile(re.escape(self.upstream.encode()) + rb"(?![0-9])")
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared upstream HTTP client (created in the serving loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120.0, trust_env=False, follow_redirects=False)
        return self._client

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: one request, then close."""
        conn = Connection(reader, writer)
        try:
            request = await conn.read_request()
            if request is None:
                return
            if request.path.startswith(ADMIN_PREFIX):
                await conn.send(self.admin(request))
            else:
                await self.proxy(conn, request)
        except (ConnectionError, h11.ProtocolError, OSError):
            pass
        finally:
            await conn.close()

    async def proxy(self, conn: Connection, request: Incoming) -> None:
        """Apply the drawn fault (or none) to one request; its log line is written before the client sees anything."""
        draw = self.injector.draw(request.path)
        record: dict[str, Any] = {"time": time.time(), "method": request.method, "path": request.target,
                                  "range": request.header("range"), "fault": draw.kind, "origin": draw.origin,
                                  "status": None, "bytes": 0, "length": None}
        started = time.perf_counter()

        def log() -> None:
            if "seconds" not in record:
                record["seconds"] = round(time.perf_counter() - started, 6)
                self._log(record)

        try:
            await self._apply(conn, request, draw, record, log)
        finally:
            log()

    async def _apply(self, conn: Connection, request: Incoming, draw: Draw, record: dict[str, Any],
                     log: Callable[[], None]) -> None:
        head = request.method == "HEAD"
        if draw.kind == "5xx":
            await self._send(conn, error_answer(draw.status or 503), record, log, head=head)
            return
        if draw.kind == "reset":
            log()
            conn.reset()
            return
        if draw.kind == "stall" and await conn.client_hung_up_within(self.injector.plan.stall_seconds):
            record["client_gone"] = True
            return
        answer = await self.forward(request)
        if draw.kind == "truncate":
            if not answer.body or head:
                record["fault"] = "reset"  # nothing to cut short: the honest equivalent is a reset
                log()
                conn.reset()
                return
            # the connection is closed after half the body: the client sees it end early
            await self._send(conn, answer, record, log, head=False, body_bytes=len(answer.body) // 2)
            return
        await self._send(conn, answer, record, log, head=head)

    @staticmethod
    async def _send(conn: Connection, answer: Answer, record: dict[str, Any], log: Callable[[], None], *,
                    head: bool, body_bytes: int | None = None) -> None:
        """Log, then send (all of, or `body_bytes` of) the answer."""
        sent = 0 if head else len(answer.body) if body_bytes is None else min(body_bytes, len(answer.body))
        record.update(status=answer.status, length=answer.length, bytes=sent)
        log()
        await conn.send(answer, body_bytes, head=head)

    async def forward(self, request: Incoming) -> Answer:
        """The upstream's answer to the request, with upstream URLs in textual bodies pointing at the proxy."""
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_HEADERS]
        headers.append(("accept-encoding", "identity"))
        try:
            response = await self.client.request(request.method, self.upstream + request.target, headers=headers,
                                                 content=request.body)
        except httpx.HTTPError as error:
            return error_answer(502, f"the upstream {self.upstream} failed: {type(error).__name__}: {error}")
        body = response.content
        if TEXT_TYPES.search(response.headers.get("content-type", "")) and response.status_code != 206:
            body = self.pattern.sub(self.public.encode(), body)
        out = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_HEADERS]
        out = [(k, self.pattern.sub(self.public.encode(), v.encode()).decode() if k.lower() == "location" else v)
               for k, v in out]
        declared = int(response.headers.get("content-length", 0)) if request.method == "HEAD" else None
        return Answer(response.status_code, out, body, declared)

    def admin(self, request: Incoming) -> Answer:
        """`/_proxy/healthz`, and GET/POST/DELETE `/_proxy/faults` (read / partially update / clear the plan)."""
        if request.path == ADMIN_PREFIX + "healthz":
            return Answer(200, [("content-type", "application/json"), pid_header()], b'{"ok": true}')
        if request.path != ADMIN_PREFIX + "faults":
            return json_answer(404, {"error": f"no proxy endpoint {request.path}"})
        if request.method == "POST":
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self.injector.configure(changes)
            except (ValueError, TypeError) as error:
                return json_answer(400, {"error": str(error)})
        elif request.method == "DELETE":
            self.injector.clear()
        return json_answer(200, self.injector.state())

    def _log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (synchronous: one event loop, so lines never interleave)."""
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def json_answer(status: int, value: Any) -> Answer:
    """A JSON response."""
    return Answer(status, [("content-type", "application/json")], json.dumps(value).encode())


def error_answer(status: int, message: str | None = None) -> Answer:
    """An injected server error in Google's JSON error shape (which STAC clients read as plain JSON)."""
    text = message or f"{HTTPStatus(status).phrase} (fault injected by the proxy)"
    names = {500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    return json_answer(status, {"error": {"code": status, "message": text, "status": names.get(status, "UNKNOWN")}})


async def serve(config: ProxyConfig) -> None:
    """Listen on the configured address until terminated (or the parent is gone)."""
    server = ProxyServer(config)
    listener = await asyncio.start_server(server.handle, config.host, config.port, reuse_address=True, backlog=512)
    async with parent_watched(config.parent_pid), listener:
        await listener.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the proxy subprocess."""
    asyncio.run(serve(ProxyConfig.load(config_path(argv, "darts_aux.local.faultproxy"))))


if __name__ == "__main__":
    main()
