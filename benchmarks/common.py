"""What the performance benchmarks share: the ROI, the benchmark catalog, timing with load accounting."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
# Fresh processes (loads, peers, the start-up target) are timed as in an installed environment, whose modules'
# bytecode is cached: a shell that forbids writing it would have every child compile every module (1.5 s here).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
BENCH_CATALOG = CACHE / "bench-catalog"
DEFAULT_CATALOG = CACHE / "local-catalog"

ROI_2M = (526_234.0, 3_125_320.0, 536_234.0, 3_135_320.0)
"""10 km × 10 km at 2 m (5000² cube pixels), aligned to neither fill chunks (10 km) nor zarr chunks (2 km)."""
CHUNKS_2M = (519_900.0, 3_120_100.0, 539_900.0, 3_140_100.0)
"""The 2 × 2 fill chunks (20 km × 20 km) the ROI touches, inside subtile 72_46_1_1's core."""
BENCH_SUBTILE = "72_46_1_1"
QUIET = 0.10
"""A sample is 'quiet' when other processes used < 10 % of all cores while it ran."""


def bench_spec() -> Any:
    """A catalog whose one 2 m subtile holds data over all four fill chunks of the ROI."""
    from darts_aux.local import CatalogSpec

    return CatalogSpec(tiles_2m=(BENCH_SUBTILE,), regions_2m=(CHUNKS_2M,))


def roi_geobox(bounds: tuple[float, float, float, float] = ROI_2M, resolution: float = 2) -> Any:
    """The ROI as an odc-geo GeoBox in EPSG:3413."""
    from odc.geo.geobox import GeoBox

    return GeoBox.from_bbox(bounds, "EPSG:3413", resolution=resolution)


def busy_seconds() -> float:
    """CPU seconds every process on the machine has spent busy so far (from /proc/stat)."""
    with open("/proc/stat") as handle:
        v = [int(x) for x in handle.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process, its waited-for children and its live descendants (the local servers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + _descendants_seconds()


def _descendants_seconds() -> float:
    """CPU seconds (user + system) of the live processes descending from this one, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mine, frontier = set(), [os.getpid()]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in mine]
        mine.update(children)
        frontier.extend(children)
    return sum(times[p] for p in mine)


class Meter:
    """Wall time, own CPU and the other processes' share of the cores over one measured action."""

    def __init__(self, own_cpu: Callable[[], float] = own_seconds) -> None:
        self._own = own_cpu

    def __enter__(self) -> Meter:
        self._t, self._b, self._o = time.perf_counter(), busy_seconds(), self._own()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = self._own() - self._o
        cores = os.cpu_count() or 1
        busy = busy_seconds() - self._b
        self.foreign = max(0.0, busy - self.cpu - 0.01 * cores) / (self.wall * cores)


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def wait_quiet(max_wait: float = 3.0, window: float = 0.3) -> None:
    """Sleep until other processes use < QUIET of the cores over `window` s (at most `max_wait` s)."""
    started = time.perf_counter()
    while time.perf_counter() - started < max_wait:
        with Meter() as m:
            time.sleep(window)
        if m.foreign < QUIET:
            return


@dataclass
class Samples:
    """Timed runs of one action: wall, own CPU and foreign load per run."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)

    def add(self, meter: Meter) -> None:
        """Record one run."""
        self.walls.append(meter.wall)
        self.cpus.append(meter.cpu)
        self.foreign.append(meter.foreign)

    def quiet_walls(self, minimum: int = 5) -> list[float]:
        """Walls of the runs without other load (all of them when fewer than `minimum` were quiet)."""
        quiet = [w for w, f in zip(self.walls, self.foreign) if f < QUIET]
        return quiet if len(quiet) >= minimum else self.walls

    @property
    def median(self) -> float:
        """Median wall time of the quiet runs."""
        return statistics.median(self.quiet_walls())

    def summary(self) -> dict[str, Any]:
        """Everything, for the JSON."""
        quiet = [f < QUIET for f in self.foreign]
        return {"median": round(self.median, 4), "median_all": round(statistics.median(self.walls), 4),
                "n": len(self.walls), "n_quiet": sum(quiet), "walls": [round(w, 4) for w in self.walls],
                "cpu": [round(c, 3) for c in self.cpus], "foreign": [round(f, 3) for f in self.foreign]}


def timed(action: Callable[[], Any], runs: int, *, warmup: int = 1, settle: bool = True) -> Samples:
    """Run an action `warmup` + `runs` times; time the runs (after waiting for a quiet moment)."""
    for _ in range(warmup):
        action()
    samples = Samples()
    for _ in range(runs):
        if settle:
            wait_quiet()
        with Meter() as meter:
            action()
        samples.add(meter)
    return samples


def catalog(root: Path, spec: Any = None) -> Any:
    """A LocalCatalog at `root` (built there once, cached)."""
    from darts_aux.local import LocalCatalog

    return LocalCatalog(root, spec)


def use_env(**values: str) -> None:
    """Set DARTS_AUX_* variables for this process and re-read the settings."""
    from darts_aux.settings import reload_settings

    for key, value in values.items():
        os.environ[f"DARTS_AUX_{key.upper()}"] = value
    reload_settings()
