"""The lifecycle the single-process local servers share: a subprocess on a free loopback port, a run directory.

A subclass names its run-directory prefix and starts its process in `_start_server(attempt)` (setting `_port`
from `_choose_port()`, and `_proc`); start retries that three times, stop kills the whole process group,
deletes the run directory and closes the admin client. Servers still running at interpreter exit are stopped.
A server given a `port` listens there (a restart keeps its address) and fails with `PortInUseError` when
another process holds it.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

from darts_aux.local import _procs

_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


class LocalServer:
    """A running (or startable) loopback server process with a per-run directory and an admin HTTP client."""

    run_prefix: ClassVar[str] = "darts-aux-server-"
    """Prefix of the temporary run directory."""

    def __init__(self, startup_timeout: float = 30.0, port: int | None = None) -> None:
        self.startup_timeout = startup_timeout
        self.fixed_port = port
        """The port to listen on; None: a free one, new on every start."""
        self._run_dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: httpx.Client | None = None

    def start(self) -> Self:
        """Start the server on a free port and wait until it answers; idempotent."""
        if self.running:
            return self
        self._run_dir = Path(tempfile.mkdtemp(prefix=self.run_prefix))
        _LIVE.add(self)
        try:
            for attempt in range(3):
                try:
                    self._start_server(attempt)
                    return self
                except _procs.ServerStartError:
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server (whole process group) and delete its run directory; idempotent."""
        _procs.stop(self._proc)
        self._proc = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        self._run_dir = None
        self._port = None
        _LIVE.discard(self)

    @property
    def running(self) -> bool:
        """Whether start() succeeded and stop() has not been called."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` of the server (no trailing slash)."""
        return f"http://{_procs.LOOPBACK}:{self.port}"

    @property
    def port(self) -> int:
        """The server's TCP port."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self._port

    def _start_server(self, attempt: int) -> None:
        """Start the process on `_choose_port()` (set `_port`, `_proc`) and wait until it is healthy."""
        raise NotImplementedError

    def _choose_port(self) -> int:
        """The fixed port if one was asked for (PortInUseError when it is taken), else a fresh free one."""
        if self.fixed_port is None:
            return _procs.free_port()
        self.check_port()
        return self.fixed_port

    def check_port(self) -> None:
        """Raise PortInUseError when the fixed port is taken (a no-op without one): fail before any slow work."""
        if self.fixed_port is not None and not _procs.port_is_free(self.fixed_port):
            raise _procs.PortInUseError(self.fixed_port)

    def _launch(self, module: str, config_path: Path, health_path: str, attempt: int) -> None:
        """Run `python -m module CONFIG` (its output in the run directory), wait for `health_path`, empty its log."""
        assert self._run_dir is not None
        log = self._run_dir / f"{config_path.stem}-{attempt}.log"
        proc = _procs.spawn([sys.executable, "-m", module, str(config_path)], log)
        try:
            _procs.wait_healthy(f"{self.url}{health_path}", proc, log, self.startup_timeout, own_answer=True)
        except BaseException:
            _procs.stop(proc)
            raise
        self._proc = proc
        self.log_path.write_text("", encoding="utf-8")

    @property
    def log_path(self) -> Path:
        """The server's request log (JSON lines) in the run directory."""
        if self._run_dir is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self._run_dir / "requests.jsonl"


def read_request_log(path: Path) -> list[dict[str, Any]]:
    """A server's JSON-lines request log, oldest first (only the line being written may be incomplete)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise
    return records


@atexit.register
def _stop_all() -> None:
    """Interpreter exit: stop every server still running."""
    for server in list(_LIVE):
        server.stop()
