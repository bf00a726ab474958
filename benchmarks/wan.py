"""A loopback TCP proxy shaped like a WAN link: a fixed delay each way and a shared bandwidth cap per direction.

    with WanProxy("127.0.0.1", upstream_port, rtt=0.030, bandwidth=50e6) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/..."

Every chunk of bytes is delivered `rtt / 2` after it was read (so a request/response pair costs one `rtt`), and
each direction of the link leaves at most `bandwidth` bytes/s, shared by all connections (a token bucket
without burst). The proxy runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

CHUNK = 64 * 1024


class Link:
    """One direction of the link: bytes leave at most at `rate` bytes/s, in the order they were handed over.

    Credit for up to `burst` seconds of idle link is kept, so late wake-ups of the event loop do not lower the
    rate below the cap (the long-run rate stays ≤ `rate`).
    """

    def __init__(self, rate: float, burst: float = 0.005) -> None:
        self.rate = rate
        self.burst = burst
        self._free_at = 0.0

    async def send(self, size: int) -> None:
        """Wait until `size` bytes have passed the link."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now - self.burst, self._free_at)
        self._free_at = start + size / self.rate
        if self._free_at > now:
            await asyncio.sleep(self._free_at - now)


class WanProxy:
    """A shaped TCP proxy from 127.0.0.1:port to an upstream host:port."""

    def __init__(self, host: str, upstream_port: int, rtt: float = 0.030, bandwidth: float = 50e6) -> None:
        self.upstream = (host, upstream_port)
        self.one_way = rtt / 2
        self.bandwidth = bandwidth
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="wan-proxy", daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> WanProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WAN proxy did not start")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        """Stop accepting, then cancel every relay still running."""
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        down, up = Link(self.bandwidth), Link(self.bandwidth)
        handler = lambda r, w: self._connection(r, w, down, up)  # noqa: E731
        self._server = self._loop.run_until_complete(asyncio.start_server(handler, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                          down: Link, up: Link) -> None:
        """Relay one client connection to the upstream and back, both directions shaped."""
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w, up), self._pipe(server_r, client_w, down),
                                 return_exceptions=True)
        except asyncio.CancelledError:  # the proxy is shutting down
            client_w.close()
            server_w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
        """Copy one direction: each chunk is delivered one-way delay after it was read, then paced by the link."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + self.one_way, data))
                if not data:
                    return

        async def deliver() -> None:
            try:
                while True:
                    due, data = await queue.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    await link.send(len(data))
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        pumping = asyncio.ensure_future(pump())
        try:
            await deliver()
        finally:
            pumping.cancel()


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
