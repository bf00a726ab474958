"""`python -m darts_aux.local [DIR]`: build the default catalog into DIR and serve it until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from darts_aux.local.catalog import GDAL_HTTP_ENV, LocalCatalog
from darts_aux.local.spec import default_spec


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like Ctrl-C, so the servers are shut down cleanly."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the catalog, print its URLs and wait for Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m darts_aux.local", description=__doc__)
    parser.add_argument("root", nargs="?", default=".cache/local-catalog", type=Path, help="catalog directory")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.perf_counter()
    with LocalCatalog(args.root, default_spec()) as cat:
        build = cat.build
        state = "built" if build and build.built else "cached"
        print(f"catalog   {args.root.resolve()} ({state}, {build.items if build else '?'} items)")
        print(f"stac      {cat.stac_url}")
        print(f"files     {cat.files_url}")
        print(f"index     {cat.tile_index_url}")
        print(f"log       {cat.log_path}")
        print("gdal env  " + " ".join(f"{k}={v}" for k, v in GDAL_HTTP_ENV.items()))
        print(f"ready in {time.perf_counter() - t0:.1f} s; Ctrl-C stops", flush=True)
        try:
            while cat.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("stopping")


if __name__ == "__main__":
    main()
