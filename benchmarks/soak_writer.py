"""One soak writer: loads random overlapping regions until told to stop, one JSON line per load.

    python benchmarks/soak_writer.py STATE_JSON RESULTS_JSONL SLOT SEED

The supervisor (benchmarks/soak.py) starts it with the sources' addresses and the darts-aux settings in the
environment, rewrites STATE_JSON ({"dirs": {"local": …, "s3": …}, "stop": false}) when the data directories
change or the run ends, and SIGKILLs it at random moments. Before each load the writer appends a `start` line,
after it a `done` or `failed` line, so a load without an end is one a kill interrupted.

Regions are drawn from small pools so that writers keep meeting in the same chunks (about 50 per data directory):
ArcticDEM 32 m over the local catalog's 32 m tiles (12 chunks), ArcticDEM 2 m around the two corners where its
2 m subtiles meet (4 × 4 chunks each), TCVIS over a 3 × 3 block of its chunks (63–67° N, 13–9° W).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BBox = tuple[float, float, float, float]

AREA_32M: BBox = (420_000.0, 2_920_000.0, 880_000.0, 3_280_000.0)
"""Where the local catalog's 32 m tiles hold data (x 400–900 km, y 2900–3300 km, kept off the edges)."""
CORNERS_2M: tuple[tuple[float, float], ...] = ((550_000.0, 3_150_000.0), (700_000.0, 3_200_000.0))
"""Where the local catalog's 2 m subtiles meet, four around each; their data lies within 3 km of these."""
AROUND_CORNER_2M = 12_000.0
"""2 m regions lie within this distance of a corner: 3 × 3 to 4 × 4 chunks each, four of them with data."""
FILL_LOGGER = "darts_aux.fill"
"""Logs every inline fill's steps; a load of settled chunks never gets there."""
TCVIS_BLOCK = (17, 124, 3)
"""First chunk row, first chunk column and side (in chunks) of the TCVIS pool."""


@dataclass(frozen=True)
class Region:
    """One load to do: which product, its bounding box and the box's CRS."""

    product: str
    """'arcticdem-2m', 'arcticdem-32m' or 'tcvis'."""
    bounds: BBox
    crs: str


def random_region(rng: random.Random) -> Region:
    """A region of one of the three products, small enough to touch one to four chunks."""
    product = rng.choice(("arcticdem-2m", "arcticdem-32m", "tcvis"))
    if product == "arcticdem-32m":
        return Region(product, _box_in(rng, AREA_32M, (2_000.0, 30_000.0)), "EPSG:3413")
    if product == "arcticdem-2m":
        x, y = rng.choice(CORNERS_2M)
        area = (x - AROUND_CORNER_2M, y - AROUND_CORNER_2M, x + AROUND_CORNER_2M, y + AROUND_CORNER_2M)
        return Region(product, _box_in(rng, area, (300.0, 4_000.0)), "EPSG:3413")
    return Region(product, _box_in(rng, tcvis_pool(), (0.02, 0.3)), "EPSG:4326")


def tcvis_pool() -> BBox:
    """The lon/lat box of the TCVIS chunks the writers share."""
    from darts_aux.products import TCVIS_PIXEL, tcvis

    product = tcvis()
    row0, col0, side = TCVIS_BLOCK
    size = product.fill_chunk * TCVIS_PIXEL
    left, top = product.extent.x0 + col0 * size, product.extent.y0 - row0 * size
    return (left, top - side * size, left + side * size, top)


def _box_in(rng: random.Random, area: BBox, half: tuple[float, float]) -> BBox:
    """A box around a random point of `area`, half sides drawn from `half`, clipped to `area`."""
    x, y = rng.uniform(area[0], area[2]), rng.uniform(area[1], area[3])
    half_w, half_h = rng.uniform(*half), rng.uniform(*half)
    return _clip((x - half_w, y - half_h, x + half_w, y + half_h), area)


def _clip(box: BBox, area: BBox) -> BBox:
    return (max(box[0], area[0]), max(box[1], area[1]), min(box[2], area[2]), min(box[3], area[3]))


def load(region: Region, data_dir: str) -> int:
    """Load the region through the public API; returns the bytes of the returned Dataset."""
    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem, load_tcvis
    from darts_aux.products import TCVIS_PIXEL

    if region.product == "tcvis":
        dataset = load_tcvis(GeoBox.from_bbox(region.bounds, region.crs, resolution=TCVIS_PIXEL), data_dir)
    else:
        resolution = 2 if region.product == "arcticdem-2m" else 32
        dataset = load_arcticdem(GeoBox.from_bbox(region.bounds, region.crs, resolution=resolution), data_dir,
                                 resolution)
    return int(dataset.nbytes)


class FillSeen(logging.Handler):
    """Notices a log line of the fill module: the load had chunks to fill (reading settled ones logs none)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = True


class Writer:
    """The load loop of one writer slot."""

    def __init__(self, state_path: Path, results_path: Path, slot: int, seed: int) -> None:
        self.state_path = state_path
        self.results = results_path.open("a", encoding="utf-8")
        self.slot = slot
        self.rng = random.Random(seed)
        self.kind = "local" if slot % 2 == 0 else "s3"
        """Even slots write into the local data directory, odd ones into the S3 one."""

    def run(self) -> None:
        """Load random regions until the state says stop."""
        while True:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            if state["stop"]:
                return
            self.one(random_region(self.rng), state["dirs"][self.kind])

    def one(self, region: Region, data_dir: str) -> None:
        """One load, recorded before it starts and after it ends."""
        from darts_aux.errors import DartsAuxError

        common = {"slot": self.slot, "pid": os.getpid(), "product": region.product, "bounds": region.bounds,
                  "data_dir": data_dir}
        self.record({**common, "event": "start"})
        fills = FillSeen()
        logging.getLogger(FILL_LOGGER).addHandler(fills)
        started = time.perf_counter()
        try:
            size = load(region, data_dir)
        except DartsAuxError as error:
            self.record({**common, "event": "failed", "typed": True, "error": type(error).__name__,
                         "message": str(error), "seconds": time.perf_counter() - started})
        except Exception as error:  # noqa: BLE001 - anything untyped is a bug the supervisor reports
            self.record({**common, "event": "failed", "typed": False, "error": type(error).__name__,
                         "message": str(error), "traceback": traceback.format_exc(),
                         "seconds": time.perf_counter() - started})
        else:
            self.record({**common, "event": "done", "bytes": size, "filled": fills.seen,
                         "seconds": time.perf_counter() - started})
        finally:
            logging.getLogger(FILL_LOGGER).removeHandler(fills)

    def record(self, fields: dict[str, Any]) -> None:
        """Append one JSON line and flush it (a SIGKILL must not lose what was already decided)."""
        self.results.write(json.dumps({"time": time.time(), **fields}) + "\n")
        self.results.flush()


def main(argv: list[str]) -> None:
    """Entry point: `soak_writer.py STATE_JSON RESULTS_JSONL SLOT SEED`."""
    state, results, slot, seed = argv
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s writer {slot} %(name)s: %(message)s")
    logging.getLogger("darts_aux").setLevel(logging.INFO)
    Writer(Path(state), Path(results), int(slot), int(seed)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
