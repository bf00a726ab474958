"""Shared pieces of the local servers: a JSON-lines request log, parent watching, the uvicorn entry point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Describe = Callable[[Scope], "dict[str, Any] | None"]
"""Fields to log for a request, or None to let it pass unlogged."""


class RequestLog:
    """ASGI middleware appending one JSON line per request: what was asked and what was sent."""

    def __init__(self, app: ASGIApp, log_path: Path, describe: Describe, scope_key: str | None = None) -> None:
        self.app = app
        self.log_path = log_path
        self.describe = describe
        self.scope_key = scope_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = self.describe(scope) if scope["type"] == "http" else None
        if fields is None:
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        record: dict[str, Any] = {"time": time.time(), **fields, "method": scope["method"],
                                  "path": scope["path"] + (f"?{query}" if query else ""), "status": None, "bytes": 0}
        if self.scope_key:
            scope[self.scope_key] = record  # the app may add fields of its own
        t0 = time.perf_counter()
        done = False

        async def logging_send(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            elif message["type"] == "http.response.body":
                record["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False) and not done:
                    done = True
                    self._write(record, t0)
            await send(message)

        try:
            await self.app(scope, receive, logging_send)
        finally:
            if not done:
                record["error"] = "response not completed"
                self._write(record, t0)

    def _write(self, record: dict[str, Any], t0: float) -> None:
        """Append the record (synchronous: one event loop, so lines never interleave)."""
        record["seconds"] = round(time.perf_counter() - t0, 6)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def request_headers(scope: Scope) -> dict[str, str]:
    """A request's headers, lower-cased names."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def watch_parent(parent_pid: int) -> None:
    """Stop the server once the parent process is gone (no orphans after a crashed test run)."""
    if parent_pid <= 0:
        return
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


@contextlib.asynccontextmanager
async def parent_watched(parent_pid: int) -> AsyncIterator[None]:
    """While the block runs, end this server process when its parent is gone (see `watch_parent`)."""
    watcher = asyncio.create_task(watch_parent(parent_pid))
    try:
        yield
    finally:
        watcher.cancel()


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Run an ASGI app with uvicorn, quietly, until terminated."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
