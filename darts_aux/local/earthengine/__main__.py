"""`python -m darts_aux.local.earthengine`: serve the local Earth Engine on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time

from darts_aux.local.earthengine.engine import DEFAULT_PROJECT, LocalEarthEngine
from darts_aux.local.earthengine.tcvis import EDITIONS


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like Ctrl-C, so the server is shut down cleanly."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the server, print how to use it and wait for Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m darts_aux.local.earthengine", description=__doc__)
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="the Cloud project the server answers for")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with LocalEarthEngine(args.project) as local_ee:
        print(f"url       {local_ee.url}", flush=True)
        print(f"project   {local_ee.project}")
        print(f"log       {local_ee.log_path}")
        print(f"editions  {', '.join(EDITIONS)}")
        print(
            "client    ee.Initialize(credentials=google.auth.credentials.AnonymousCredentials(), "
            f"project={local_ee.project!r}, url={local_ee.url!r})"
        )
        print(
            f"offline   https_proxy={local_ee.url} in the client's environment makes its deprecation check fail at once"
        )
        print("Ctrl-C stops", flush=True)
        try:
            while local_ee.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
