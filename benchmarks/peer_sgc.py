"""smart-geocubes (the library DARTS loads ArcticDEM with) as a benchmark peer, on darts-aux's loopback catalog.

The peer runs in its own venv (it needs Python 3.13) through `peer_sgc_child.py`; this module (the project's
venv) builds that venv, writes the extent GeoParquets the peer finds its tiles in from the items the loopback STAC
API serves, runs the child and compares the child's pixels with darts-aux's.

    uv run python benchmarks/peer_sgc.py --check

starts the benchmark catalog, loads a 2 km box and the 10 km ROI at 2 m with darts-aux (cold, then warm) and with
the peer (cold, warm in the same process, warm in a new process), prints the timings, their ratios, the bytes the
catalog's file server sent to each (from its own request log) and the pixel comparison, and writes them to
`benchmarks/peer_sgc_results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_CATALOG, CACHE, ROI_2M, Meter, bench_spec, catalog, roi_geobox, use_env

Box = tuple[float, float, float, float]
"""(left, bottom, right, top) in EPSG:3413 metres."""
PEER_VENV = CACHE / "peer-sgc-venv"
PEER_PYTHON_BUILD = Path("/root/.pyenv/versions/3.13.0/bin/python3.13")
"""The interpreter the venv is made from: smart-geocubes' default threaded backend needs Python 3.13."""
PEER_REQUIREMENTS = (
    "smart-geocubes[stac]>=0.1,<0.2",  # the release line DARTS pins (darts-nextgen: smart-geocubes<0.2)
    "zarr>=3.1.4,<3.2",  # DARTS's own pin; without it zarr 3.4 comes in, an environment DARTS never runs
    "dask>=2024.11.0,<2025.3.0",  # DARTS's own pin, for the same reason
)
CHILD = Path(__file__).resolve().with_name("peer_sgc_child.py")
RESULTS = Path(__file__).resolve().with_name("peer_sgc_results.json")
PEER_NODATA = -9999.0
"""What PGC's dem COGs hold where there is no elevation; the peer passes it through (darts-aux returns NaN)."""
EXTENT_NAME = "ArcticDEM_Mosaic_Index_v4_1_{res}.parquet"
"""The peer's extent file names (`smart_geocubes.datasets.arcticdem`): one per resolution, all three required."""
SMALL_BOX = (526_234.0, 3_125_320.0, 528_234.0, 3_127_320.0)
"""2 km × 2 km at the ROI's lower left corner: inside the same 2 m tile, so the peer still reads the whole tile."""
NODATA_BOXES = {
    "region-edge": (538_900.0, 3_139_100.0, 540_900.0, 3_141_100.0),
    "tile-edge": (549_100.0, 3_139_100.0, 551_100.0, 3_141_100.0),
}
"""2 km boxes that show each side's no-data: across the corner of the catalog's data region (elevations, and the
tile's own nodata beyond them), and across the tile's east edge (the tile's nodata, then no tile at all)."""


class PeerError(RuntimeError):
    """The peer's venv could not be built or its run failed; the message carries the tail of its output."""


# -- the peer's venv ---------------------------------------------------------------------------------


def ensure_peer_venv() -> Path:
    """The peer venv's python: built under .cache/peer-sgc-venv with uv, reused while it satisfies the pins."""
    python = PEER_VENV / "bin" / "python"
    if python.exists() and _satisfied(installed_versions(python)):
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise PeerError("uv is not installed; install it with `python3 -m pip install uv`")
    if not python.exists():
        _run([uv, "venv", "-q", "-p", str(PEER_PYTHON_BUILD), str(PEER_VENV)], "create the peer venv")
    _run([uv, "pip", "install", "-q", "--python", str(python), *PEER_REQUIREMENTS], "install smart-geocubes")
    if not _satisfied(installed_versions(python)):
        raise PeerError(f"the peer venv at {PEER_VENV} does not satisfy {PEER_REQUIREMENTS}; delete it and retry")
    return python


def installed_versions(python: Path) -> dict[str, str]:
    """Distribution name → version of everything installed in the venv of `python`."""
    code = ("import json, importlib.metadata as m; "
            "print(json.dumps({d.name.lower(): d.version for d in m.distributions()}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def _satisfied(installed: dict[str, str]) -> bool:
    """Every requirement of PEER_REQUIREMENTS is installed at a version it allows."""
    from packaging.requirements import Requirement

    for line in PEER_REQUIREMENTS:
        requirement = Requirement(line)
        found = installed.get(requirement.name.lower())
        if found is None or not requirement.specifier.contains(found, prereleases=True):
            return False
    return True


PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                   "NO_PROXY")
_PROXIES_AT_IMPORT = {name: os.environ.get(name) for name in PROXY_VARIABLES}
"""The machine's own proxy settings when this module was imported: test fixtures later point the proxies at loopback
(to catch stray fetches of Earth Engine's client or Ray), which must not reach the package registry."""


def _registry_env() -> dict[str, str]:
    """This process's environment with the machine's own proxy settings, for the installer."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update({k: v for k, v in _PROXIES_AT_IMPORT.items() if v is not None})
    return env


def _run(command: list[str], what: str) -> None:
    """Run a setup command (with the machine's own proxies); PeerError with its output's tail when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=_registry_env())
    if done.returncode != 0:
        raise PeerError(f"could not {what}: {(done.stderr or done.stdout)[-1500:]}")


# -- the extent GeoParquets --------------------------------------------------------------------------


def served_items(stac_url: str, collection: str) -> list[dict[str, Any]]:
    """Every item of a collection as the STAC API serves it, following its `next` links."""
    import httpx

    url: str | None = f"{stac_url.rstrip('/')}/collections/{collection}/items?limit=100"
    items: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        while url is not None:
            page = client.get(url).raise_for_status().json()
            items.extend(page.get("features", []))
            url = next((link["href"] for link in page.get("links", []) if link.get("rel") == "next"), None)
            if not page.get("features"):
                url = None
    return items


def extent_frame(items: list[dict[str, Any]]) -> Any:
    """The peer's extent table for one resolution: `dem_id` (the item id) and each tile's footprint in EPSG:3413.

    The footprint is the item's `proj:bbox` (the tile with its buffer, as PGC's own index draws it); items without
    projection fields fall back to their lon/lat geometry. The other columns mirror PGC's index for readers.
    """
    import geopandas as gpd
    from shapely.geometry import box, shape

    rows, geometries = [], []
    for item in items:
        props = item["properties"]
        rows.append({"dem_id": item["id"], "gsd": props.get("gsd"), "epsg": 3413,
                     "release_ver": props.get("release_version")})
        if "proj:bbox" in props and props.get("proj:code") == "EPSG:3413":
            geometries.append(box(*props["proj:bbox"]))
        else:
            geometries.append(gpd.GeoSeries([shape(item["geometry"])], crs="EPSG:4326").to_crs(3413).iloc[0])
    if not rows:
        return gpd.GeoDataFrame({"dem_id": [], "gsd": [], "epsg": [], "release_ver": []},
                                geometry=gpd.GeoSeries([], crs="EPSG:3413"))
    return gpd.GeoDataFrame(rows, geometry=geometries, crs="EPSG:3413")


def write_extent_files(stac_url: str, directory: Path) -> dict[str, int]:
    """The three extent GeoParquets (2, 10, 32 m) from the served items (written once per `workdir` by
    `peer_load`, or beforehand); tiles per resolution."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for res in ("2m", "10m", "32m"):
        items = served_items(stac_url, f"arcticdem-mosaics-v4.1-{res}")
        extent_frame(items).to_parquet(directory / EXTENT_NAME.format(res=res), index=False)
        counts[res] = len(items)
    return counts


# -- one run of the peer -----------------------------------------------------------------------------


def peer_load(
    stac_url: str,
    bounds: Box,
    resolution: int,
    workdir: Path,
    out_dir: Path,
    warm_runs: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
    backend: str = "simple",
) -> dict[str, Any]:
    """Load `bounds` (EPSG:3413) with smart-geocubes in a fresh process; the child's JSON report.

    `workdir` holds the peer's cube (`arcticdem_<res>m.icechunk`, the name DARTS requires), its aux folder and the
    extent files: a first call fills the cube (cold), a later call on the same `workdir` reads it (warm, new
    process). `warm_runs` more loads follow the first in the same process. The arrays land in `out_dir`.
    """
    python = ensure_peer_venv()
    if not all((workdir / "extent" / EXTENT_NAME.format(res=res)).exists() for res in ("2m", "10m", "32m")):
        write_extent_files(stac_url, workdir / "extent")
    args = {"stac_url": stac_url, "resolution": resolution, "bounds": list(bounds),
            "cube_dir": str(workdir / f"arcticdem_{resolution}m.icechunk"), "aux_dir": str(workdir / "aux"),
            "extent_dir": str(workdir / "extent"), "out_dir": str(out_dir), "warm_runs": warm_runs,
            "backend": backend}
    started = time.perf_counter()
    done = subprocess.run([str(python), str(CHILD), json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(env), cwd=workdir)
    process_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise PeerError(f"smart-geocubes failed (exit {done.returncode}): {done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(_last_json_line(done.stdout))
    report["process_seconds"] = process_seconds
    return report


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without the project venv's markers, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra or {})
    return env


def _last_json_line(stdout: str) -> str:
    """The child's report: its last stdout line that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return line
    raise PeerError(f"smart-geocubes printed no report: {stdout[-1500:]}")


# -- pixel comparison --------------------------------------------------------------------------------


def compare(peer_out_dir: Path, dataset: Any) -> dict[str, Any]:
    """The peer's pixels against a darts-aux Dataset (from `load_arcticdem` over the same geobox).

    The two windows are aligned by their x/y coordinates (exact float equality) and compared where both have
    pixels. dem: equal when both hold the same number, or darts-aux holds NaN and the peer its nodata (NaN or
    PGC's −9999, counted apart). datamask: the peer's bool against darts-aux's uint8 (0/1).
    """
    peer = {name: np.load(peer_out_dir / f"{name}.npy") for name in ("dem", "datamask", "x", "y")}
    ours = {name: dataset[name].values for name in ("dem", "datamask", "x", "y")}
    rows, cols = _common_indices(peer["y"], ours["y"]), _common_indices(peer["x"], ours["x"])
    out: dict[str, Any] = {
        "peer_shape": list(peer["dem"].shape), "ours_shape": list(ours["dem"].shape),
        "common_shape": [len(rows[0]), len(cols[0])],
        "grids_coincide": _on_one_grid(peer["x"], ours["x"]) and _on_one_grid(peer["y"], ours["y"]),
        "peer_beyond_ours": _margins(peer["y"], peer["x"], ours["y"], ours["x"]),
        "ours_beyond_peer": _margins(ours["y"], ours["x"], peer["y"], peer["x"]),
    }
    if not len(rows[0]) or not len(cols[0]):
        return out
    pick_peer, pick_ours = np.ix_(rows[0], cols[0]), np.ix_(rows[1], cols[1])
    out["dem"] = _compare_dem(peer["dem"][pick_peer], ours["dem"][pick_ours])
    out["datamask"] = _compare_mask(peer["datamask"][pick_peer], ours["datamask"][pick_ours])
    return out


def _common_indices(peer: np.ndarray, ours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `peer` and into `ours` of the coordinates both hold (exact equality), in `ours`' order."""
    where_peer = {float(v): i for i, v in enumerate(peer)}
    pairs = [(where_peer[float(v)], j) for j, v in enumerate(ours) if float(v) in where_peer]
    return np.array([p for p, _ in pairs], dtype=np.intp), np.array([o for _, o in pairs], dtype=np.intp)


def _on_one_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """Both coordinate vectors have one spacing and lie on one lattice (offset a whole number of pixels)."""
    step_a, step_b = np.diff(a), np.diff(b)
    if not (np.all(step_a == step_a[0]) and np.all(step_b == step_b[0]) and step_a[0] == step_b[0]):
        return False
    offset = (a[0] - b[0]) / step_a[0]
    return bool(offset == round(offset))


def _margins(y: np.ndarray, x: np.ndarray, other_y: np.ndarray, other_x: np.ndarray) -> dict[str, int]:
    """Rows/columns of one window beyond the other's on each side (y falls downwards, x rises rightwards)."""
    return {"top": int(np.sum(y > other_y.max())), "bottom": int(np.sum(y < other_y.min())),
            "left": int(np.sum(x < other_x.min())), "right": int(np.sum(x > other_x.max()))}


def _compare_dem(peer: np.ndarray, ours: np.ndarray) -> dict[str, Any]:
    """Counts of equal and different dem pixels, nodata conventions told apart."""
    ours_nodata = np.isnan(ours)
    peer_nan, peer_pgc = np.isnan(peer), peer == PEER_NODATA
    same_value = ~ours_nodata & (peer == ours)
    same_nodata = ours_nodata & (peer_nan | peer_pgc)
    finite_both = ~ours_nodata & ~peer_nan & ~peer_pgc
    diff = np.abs(peer[finite_both].astype(np.float64) - ours[finite_both]) if finite_both.any() else np.zeros(1)
    return {
        "compared": int(ours.size), "equal": int(same_value.sum() + same_nodata.sum()),
        "different": int(ours.size - same_value.sum() - same_nodata.sum()),
        "equal_values": int(same_value.sum()), "equal_nodata": int(same_nodata.sum()),
        "peer_nodata_nan": int((ours_nodata & peer_nan).sum()), "peer_nodata_pgc": int((ours_nodata & peer_pgc).sum()),
        "peer_value_where_ours_nodata": int((ours_nodata & ~peer_nan & ~peer_pgc).sum()),
        "peer_nodata_where_ours_value": int((~ours_nodata & (peer_nan | peer_pgc)).sum()),
        "max_abs_difference": float(diff.max()), "peer_dtype": str(peer.dtype), "ours_dtype": str(ours.dtype),
    }


def _compare_mask(peer: np.ndarray, ours: np.ndarray) -> dict[str, Any]:
    """Counts of equal and different datamask pixels (the peer's bool read as 0/1)."""
    equal = peer.astype(np.uint8) == ours
    return {"compared": int(ours.size), "equal": int(equal.sum()), "different": int((~equal).sum()),
            "peer_dtype": str(peer.dtype), "ours_dtype": str(ours.dtype),
            "ours_values": [int(v) for v in np.unique(ours)], "peer_values": [int(v) for v in np.unique(peer)]}


# -- the demo: darts-aux and the peer on the same boxes ----------------------------------------------


def served(cat: Any) -> dict[str, int]:
    """What the catalog's gateway logged since its last reset: file requests and bytes, STAC requests."""
    files = cat.requests("files")
    return {"file_requests": len(files), "file_bytes": sum(int(r["bytes"]) for r in files),
            "stac_requests": len(cat.requests("stac"))}


def warm_page_cache(cat: Any) -> None:
    """Read every COG of the catalog once, so neither side pays for the disk."""
    for path in Path(cat.root).rglob("*.tif"):
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def warm_imports(data_dir: Path) -> None:
    """One throwaway darts-aux fill of a 200 m box, so its timed cold load does not pay for first imports."""
    from darts_aux import load_arcticdem

    corner = (ROI_2M[0] + 6000, ROI_2M[1] + 6000)
    load_arcticdem(roi_geobox((*corner, corner[0] + 200, corner[1] + 200)), data_dir, 2)


def ours_cold_and_warm(cat: Any, bounds: Box, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """darts-aux's load of `bounds` into an empty data dir, then again from the filled cube (same process)."""
    from darts_aux import load_arcticdem

    geobox = roi_geobox(bounds)
    cat.reset_log()
    cpu = time.process_time()
    with Meter() as cold:
        dataset = load_arcticdem(geobox, data_dir, 2)
    cold_cpu, traffic = time.process_time() - cpu, served(cat)
    cpu = time.process_time()
    with Meter() as warm:
        load_arcticdem(geobox, data_dir, 2)
    return dataset, {"cold_seconds": cold.wall, "cold_cpu_seconds": cold_cpu, "cold_foreign": cold.foreign,
                     "warm_seconds": warm.wall, "warm_cpu_seconds": time.process_time() - cpu, **traffic}


def peer_cold_and_warm(cat: Any, bounds: Box, workdir: Path) -> dict[str, Any]:
    """The peer's cold load (plus one warm load in the same process), then a warm load in a new process."""
    tiles = write_extent_files(cat.stac_url, workdir / "extent")
    cat.reset_log()
    with Meter() as meter:
        cold = peer_load(cat.stac_url, bounds, 2, workdir, workdir / "out-cold", warm_runs=1)
    traffic = served(cat)
    warm = peer_load(cat.stac_url, bounds, 2, workdir, workdir / "out-warm")
    return {"cold": cold, "warm_new_process": warm, "cold_foreign": meter.foreign, "extent_tiles": tiles, **traffic}


def measure_box(cat: Any, name: str, bounds: Box, scratch: Path) -> dict[str, Any]:
    """darts-aux and the peer on one box, cold and warm, and the comparison of their pixels."""
    print(f"{name}: darts-aux, cold then warm …", flush=True)
    dataset, ours = ours_cold_and_warm(cat, bounds, scratch / f"darts-aux-{name}")
    print(f"{name}: smart-geocubes, cold (it reads whole tiles: minutes at 2 m) …", flush=True)
    peer = peer_cold_and_warm(cat, bounds, scratch / f"peer-{name}")
    return {"bounds": list(bounds), "ours": ours, "peer": peer,
            "comparison": compare(scratch / f"peer-{name}" / "out-cold", dataset),
            "comparison_warm": compare(scratch / f"peer-{name}" / "out-warm", dataset)}


def nodata_box(cat: Any, name: str, bounds: Box, scratch: Path,
               peer_workdir: Path) -> dict[str, Any]:
    """darts-aux cold and the peer warm (a new process on a cube that already holds the tile) on one box."""
    from darts_aux import load_arcticdem

    dataset = load_arcticdem(roi_geobox(bounds), scratch / f"darts-aux-{name}", 2)
    peer = peer_load(cat.stac_url, bounds, 2, peer_workdir, peer_workdir / f"out-{name}")
    return {"bounds": list(bounds), "peer_load_seconds": peer["load_seconds"], "peer_steps": peer["steps"],
            "comparison": compare(peer_workdir / f"out-{name}", dataset)}


def check(boxes: dict[str, Box]) -> dict[str, Any]:
    """Start the benchmark catalog and measure every box; the results, also written to RESULTS."""
    python = ensure_peer_venv()
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": os.getloadavg(),
                               "peer_python": str(python), "boxes": {}}
    with catalog(BENCH_CATALOG, bench_spec()) as cat, tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        use_env(stac_url=cat.stac_url, orchestrator="inline")
        scratch = Path(tmp)
        warm_page_cache(cat)
        warm_imports(scratch / "darts-aux-imports")
        for name, bounds in boxes.items():
            results["boxes"][name] = measure_box(cat, name, bounds, scratch)
            print_box(name, results["boxes"][name])
        if boxes:
            peer_workdir = scratch / f"peer-{next(iter(boxes))}"
            results["nodata_boxes"] = {}
            for name, bounds in NODATA_BOXES.items():
                results["nodata_boxes"][name] = nodata_box(cat, name, bounds, scratch, peer_workdir)
                print_comparison(name, results["nodata_boxes"][name]["comparison"])
    results["load_after"] = os.getloadavg()
    RESULTS.write_text(json.dumps(results, indent=1))
    return results


def print_box(name: str, box: dict[str, Any]) -> None:
    """One box's figures as prose."""
    ours, peer = box["ours"], box["peer"]
    cold, warm = peer["cold"], peer["warm_new_process"]
    mb = 1e6
    print(f"{name}: darts-aux cold {ours['cold_seconds']:.2f} s, {ours['cold_cpu_seconds']:.2f} CPU s "
          f"({ours['file_requests']} file requests, {ours['file_bytes'] / mb:.1f} MB), "
          f"warm {ours['warm_seconds']:.3f} s.")
    print(f"{name}: smart-geocubes cold {cold['load_seconds']:.1f} s, {cold['load_cpu_seconds']:.1f} CPU s "
          f"({peer['file_requests']} file requests, "
          f"{peer['file_bytes'] / mb:.1f} MB; accessor {cold['open_seconds']:.2f} s, empty cube "
          f"{cold['create_seconds']:.2f} s), warm {cold['warm_seconds'][0]:.3f} s in the same process and "
          f"{warm['load_seconds']:.3f} s in a new one.")
    print(f"{name}: cold ratio {cold['load_seconds'] / ours['cold_seconds']:.1f}× wall, "
          f"{cold['load_cpu_seconds'] / ours['cold_cpu_seconds']:.1f}× CPU (smart-geocubes / darts-aux); "
          f"warm ratio {warm['load_seconds'] / ours['warm_seconds']:.1f}× wall (other processes used "
          f"{ours['cold_foreign']:.0%} and {peer['cold_foreign']:.0%} of the cores during the cold loads).")
    for step in cold["steps"]:
        print(f"{name}:   smart-geocubes {step['action']} of {step['patch']}: {step['seconds']:.1f} s")
    print_comparison(name, box["comparison"])


def print_comparison(name: str, comparison: dict[str, Any]) -> None:
    """One comparison as prose."""
    dem, mask = comparison.get("dem", {}), comparison.get("datamask", {})
    print(f"{name}: windows {comparison['peer_shape']} (peer) and {comparison['ours_shape']} (darts-aux), "
          f"{comparison['common_shape']} in common, grids coincide: {comparison['grids_coincide']}; "
          f"peer beyond ours {comparison['peer_beyond_ours']}, ours beyond peer {comparison['ours_beyond_peer']}.")
    print(f"{name}: dem {dem.get('equal')} of {dem.get('compared')} equal ({dem.get('equal_nodata')} no-data, of "
          f"which the peer held −9999 at {dem.get('peer_nodata_pgc')} and NaN at {dem.get('peer_nodata_nan')}), "
          f"{dem.get('different')} different; datamask {mask.get('equal')} of {mask.get('compared')} equal.")


def _boxes(names: list[str]) -> Iterator[tuple[str, Box]]:
    """The chosen boxes by name."""
    known = {"2km": SMALL_BOX, "10km": ROI_2M}
    for name in names:
        yield name, known[name]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="run the demo on the benchmark catalog")
    parser.add_argument("--boxes", nargs="+", default=["2km", "10km"], choices=["2km", "10km"])
    options = parser.parse_args()
    if not options.check:
        parser.print_help()
        sys.exit(0)
    check(dict(_boxes(options.boxes)))
