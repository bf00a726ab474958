"""Subprocess plumbing for the local servers: free ports, start in own session, wait healthy, stop tree."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from darts_aux.errors import InvalidRequestError
from darts_aux.local._config import PID_HEADER

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """A local server did not become healthy; the message quotes the end of its log."""


class PortInUseError(InvalidRequestError):
    """A port asked for by number is taken by another process; `port` and `host` name it."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        super().__init__(f"port {port} on {host} is already in use; pass another port, or none to get a free one")
        self.port = port
        self.host = host


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on `port` now (bound as uvicorn binds, so a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent (no dlopen between fork and exec)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent thread dies (Linux), so no server outlives a crash."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session with stdout+stderr to `log_path` and stdin closed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The death signal follows the creating thread, so only ask for it from the main thread.
    pdeath = _die_with_parent if _PRCTL is not None and threading.current_thread() is threading.main_thread() else None
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pdeath,
            env=env,
        )


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group of `proc`, then SIGKILL it if still alive after `timeout` seconds."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while children of its group live on: sweep the group once more.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout)


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float, *, own_answer: bool = False
) -> None:
    """Poll `url` until it answers 200; fail fast if `proc` exits, with the log tail in the error.

    With `own_answer`, only an answer carrying `proc`'s pid (PID_HEADER) counts: another server that holds the
    port answers too, while `proc` fails to bind it.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(f"{url}: server exited with {proc.returncode}\n{log_tail(log_path)}")
            try:
                response = client.get(url)
                if response.status_code == 200 and (not own_answer or _answered_by(response, proc)):
                    return
                last = f"HTTP {response.status_code}" if response.status_code != 200 else "another server answers"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
    raise ServerStartError(f"{url}: not healthy after {timeout:.0f} s ({last})\n{log_tail(log_path)}")


def _answered_by(response: httpx.Response, proc: subprocess.Popen[bytes]) -> bool:
    """Whether the answer names `proc` as its server."""
    return response.headers.get(PID_HEADER) == str(proc.pid)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a server log (empty when missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
