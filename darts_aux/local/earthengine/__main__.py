"""`python -m darts_aux.local.earthengine [--port PORT]`: serve the local Earth Engine on loopback until Ctrl-C.

Prints what it serves to stderr, then the `export DARTS_AUX_…` lines that point darts-aux at it.
"""

from __future__ import annotations

import argparse
import time

from darts_aux.local._cli import (
    add_port_option,
    busy_port_message,
    fail,
    print_exports,
    require_local_extra,
    run_service,
    say,
    stop_on_sigterm,
    where,
)
from darts_aux.local._procs import PortInUseError, port_is_free
from darts_aux.local.earthengine.engine import DEFAULT_PROJECT, LocalEarthEngine
from darts_aux.local.earthengine.tcvis import EDITIONS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """--project and --port."""
    parser = argparse.ArgumentParser(prog="python -m darts_aux.local.earthengine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=DEFAULT_PROJECT,
                        help=f"the Cloud project the server answers for (default: {DEFAULT_PROJECT})")
    add_port_option(parser)
    return parser.parse_args(argv)


def describe(local_ee: LocalEarthEngine) -> None:
    """What is served and how a client reaches it, then the export lines."""
    say(f"serving project {local_ee.project} with the TCVIS editions {', '.join(EDITIONS)} at {local_ee.url}")
    say(f"requests are logged to {local_ee.log_path}")
    say(f"from Python: ee.Initialize(credentials=google.auth.credentials.AnonymousCredentials(), "
        f"project='{local_ee.project}', url='{local_ee.url}')")
    say(f"offline, also give the client's process https_proxy={local_ee.url} and no_proxy=127.0.0.1,localhost: "
        "its deprecation check then fails at once instead of waiting for the network")
    print_exports({"ee_url": local_ee.url, "ee_project": local_ee.project, "ee_credentials": "anonymous"})


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the server, print its export lines and wait for Ctrl-C (or SIGTERM)."""
    args = parse_args(argv)
    require_local_extra("python -m darts_aux.local.earthengine")
    if args.port is not None and not port_is_free(args.port):
        fail(busy_port_message(PortInUseError(args.port)))
    stop_on_sigterm()
    started = time.perf_counter()
    local_ee = LocalEarthEngine(args.project, port=args.port)
    say(f"starting the local Earth Engine {where(args.port)}")
    run_service(local_ee, local_ee.start, lambda: describe(local_ee), "the server", started)


if __name__ == "__main__":
    main()
