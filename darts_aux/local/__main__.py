"""`python -m darts_aux.local [DIR] [--port PORT]`: build the default catalog into DIR and serve it until Ctrl-C.

Prints one line per build step to stderr, then the `export DARTS_AUX_…` lines that point darts-aux at it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from darts_aux.local.catalog import LocalCatalog


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The catalog directory and --port."""
    parser = argparse.ArgumentParser(prog="python -m darts_aux.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=".cache/local-catalog", type=Path,
                        help="catalog directory, built on first use (default: .cache/local-catalog)")
    add_port_option(parser)
    return parser.parse_args(argv)


def prepare(catalog: LocalCatalog) -> None:
    """Check the port, build the catalog's tiles unless cached (saying each step), start the servers."""
    from darts_aux.local.generate import build_catalog

    catalog.check_port()
    root = catalog.root.resolve()
    say(f"checking the synthetic catalog in {root}")
    build = build_catalog(catalog.root, catalog.spec, progress=say)
    if not build.built:
        say(f"the catalog in {root} is already built ({build.items} items); reusing it")
    say(f"starting the STAC API and the file server {where(catalog.fixed_port)}")
    catalog.start()


def describe(catalog: LocalCatalog) -> None:
    """Where everything is served, then the export lines."""
    from darts_aux.local.catalog import GDAL_HTTP_ENV

    say(f"serving {len(catalog.published())} items: the STAC API at {catalog.stac_url}, the COGs and the tile "
        f"index under {catalog.files_url}")
    say(f"requests are logged to {catalog.log_path}")
    say("rasterio outside darts-aux reads the COGs best with " + " ".join(f"{k}={v}" for k, v in GDAL_HTTP_ENV.items()))
    print_exports({"stac_url": catalog.stac_url, "tile_index_url": catalog.tile_index_url})


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the catalog, print its export lines and wait for Ctrl-C (or SIGTERM)."""
    args = parse_args(argv)
    require_local_extra("python -m darts_aux.local")
    if args.port is not None and not port_is_free(args.port):
        fail(busy_port_message(PortInUseError(args.port)))  # before the slow imports
    stop_on_sigterm()
    started = time.perf_counter()
    from darts_aux.local.catalog import LocalCatalog
    from darts_aux.local.spec import default_spec

    catalog = LocalCatalog(args.root, default_spec(), port=args.port)
    run_service(catalog, lambda: prepare(catalog), lambda: describe(catalog), "the catalog", started)


if __name__ == "__main__":
    main()
