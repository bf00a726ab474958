"""What the two `python -m` entry points of the local services share: --port, progress lines, export lines, errors.

Progress and notes go to stderr as prose; the `export DARTS_AUX_…` lines go to stdout, so they can be captured
alone. A busy --port is one `error:` line and exit status 2, before any slow work.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

from darts_aux.local._procs import LOOPBACK, PortInUseError
from darts_aux.local._server import LocalServer
from darts_aux.settings import Settings


def port_number(text: str) -> int:
    """argparse type of --port: a TCP port number, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a port number; give one from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; give one from 1 to 65535")
    return port


def add_port_option(parser: argparse.ArgumentParser) -> None:
    """The --port option: a fixed port on 127.0.0.1, so the URLs stay the same across restarts."""
    parser.add_argument("--port", type=port_number, default=None,
                        help="listen on this port of 127.0.0.1 (default: a free port, new on every start)")


def say(line: str) -> None:
    """One progress line to stderr, at once."""
    print(line, file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    """One `error:` line to stderr and exit status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def require_local_extra(prog: str) -> None:
    """Exit with one line naming darts-aux[local] when the packages of its servers are not installed."""
    from darts_aux.errors import MissingExtraError
    from darts_aux.extras import require_extras

    try:
        require_extras(prog, "local")
    except MissingExtraError as error:
        fail(str(error))


def busy_port_message(error: PortInUseError) -> str:
    """The busy-port error in the words of this command line."""
    return (f"port {error.port} on {error.host} is already in use; pick another --port, "
            "or leave --port out for a free one")


def where(port: int | None) -> str:
    """'on 127.0.0.1:8000' or 'on a free port of 127.0.0.1'."""
    return f"on {LOOPBACK}:{port}" if port is not None else f"on a free port of {LOOPBACK}"


def setting_variable(field: str) -> str:
    """The environment variable of a darts-aux setting (`stac_url` -> `DARTS_AUX_STAC_URL`); the field must exist."""
    if field not in Settings.model_fields:
        raise KeyError(f"darts-aux has no setting {field}")
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def print_exports(values: Mapping[str, str]) -> None:
    """`export DARTS_AUX_…=…` lines (shell-quoted) for settings given by field name, to stdout."""
    say("paste these lines into the shell that runs darts-aux:")
    for field, value in values.items():
        print(f"export {setting_variable(field)}={shlex.quote(value)}")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like Ctrl-C, so the servers are shut down cleanly."""
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the command the way Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)


def stop_quietly(server: LocalServer) -> None:
    """Stop the server, ignoring further Ctrl-C and SIGTERM meanwhile (a second signal would leave orphans)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server.stop()


def serve_until_stopped(server: LocalServer, started: float) -> None:
    """Say the server is ready, then wait until Ctrl-C (or SIGTERM); a server that dies ends with exit status 1."""
    say(f"ready in {time.perf_counter() - started:.1f} s; Ctrl-C stops")
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return
    say("the server process ended on its own; stopping")
    raise SystemExit(1)


def run_service(server: LocalServer, start: Callable[[], object], describe: Callable[[], None], what: str,
                started: float) -> None:
    """Start a local service, describe it and serve until stopped.

    A busy port, or Ctrl-C before the service is ready, ends the process with one line (exit 2 or 130), and the
    service is stopped whichever way serving ends.
    """
    try:
        start()
    except PortInUseError as error:
        server.stop()
        fail(busy_port_message(error))
    except KeyboardInterrupt:
        server.stop()
        say(f"stopped before {what} was ready")
        raise SystemExit(130) from None
    try:
        describe()
        serve_until_stopped(server, started)
    finally:
        stop_quietly(server)
