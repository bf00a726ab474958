"""smart-geocubes' ArcticDEM accessor driven through its own code, against the loopback catalog.

Runs inside the peer's own venv (Python 3.13, see `peer_sgc.ensure_peer_venv`), never in the project's:

    <peer venv>/bin/python benchmarks/peer_sgc_child.py '<JSON arguments>'

Arguments (one JSON object): `stac_url` (the loopback STAC API root), `resolution` (2, 10 or 32), `bounds`
(EPSG:3413 left, bottom, right, top), `cube_dir` (the peer's icechunk repository; created when absent),
`aux_dir` (the peer's SMART_GEOCUBES_AUX folder), `extent_dir` (the extent GeoParquets written by the parent),
`out_dir` (where the loaded arrays go), `warm_runs` (loads of the same geobox after the first, same process) and
`backend` ("simple", as DARTS's acquisition package builds the accessor, or "threaded", the library's default).

The accessor is built and called as DARTS's `darts_acquisition.arcticdem.load_arcticdem` does (rasterio configured
by `odc.stac.configure_rio(cloud_defaults=True, aws={"aws_unsigned": True})`, the cube created first as DARTS's
pipelines create it, the geobox taken to the cube's CRS and resolution, then `accessor.load(geobox, persist=True)`).
Only two names of the peer are replaced, both in `smart_geocubes.datasets.arcticdem`: `_get_stac_url` (its item
URLs keep their path, the PGC STAC root is swapped for the loopback one) and `_download_arcticdem_extent` (copies
the extent GeoParquets from `extent_dir` instead of downloading PGC's zip). Everything else runs as released.

Prints one JSON line: seconds of each step, the result's shape and grid, the cube's codecs, the peer's own
download/write timings and the versions of the libraries that did the work.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

PGC_STAC_ROOT = "https://stac.pgc.umn.edu/api/v1/"
"""The STAC root the peer's item URLs start with (its `_get_stac_url` and `ArcticDEMABC.stac_api_url`)."""
EXTENT_NAME = "ArcticDEM_Mosaic_Index_v4_1_{res}.parquet"
"""The file names the peer reads its tile extents from (one per resolution, in its aux folder)."""
VERSIONED = ("smart-geocubes", "icechunk", "zarr", "odc-stac", "odc-geo", "xarray", "numcodecs", "dask", "rasterio")


class LoopbackPatches:
    """The two PGC addresses of the peer pointed at the loopback catalog; counts what went through them."""

    def __init__(self, module: Any, stac_url: str, extent_dir: Path) -> None:
        self.stac_root = stac_url.rstrip("/") + "/"
        self.extent_dir = extent_dir
        self.item_urls: list[str] = []
        self.extent_copies = 0
        self._original_item_url = module._get_stac_url
        module._get_stac_url = self.item_url
        module._download_arcticdem_extent = self.copy_extent

    def item_url(self, dem_id: str, res: str) -> str:
        """The peer's own item URL for `dem_id`, with the loopback STAC root in place of PGC's."""
        url = self._original_item_url(dem_id, res)
        if not url.startswith(PGC_STAC_ROOT):
            raise RuntimeError(f"smart-geocubes builds item URLs as {url!r} now; update PGC_STAC_ROOT to match")
        local = self.stac_root + url.removeprefix(PGC_STAC_ROOT)
        self.item_urls.append(local)
        return local

    def copy_extent(self, save_dir: Path) -> None:
        """Put the extent GeoParquets where the peer's download would have extracted PGC's."""
        save_dir.mkdir(parents=True, exist_ok=True)
        for res in ("2m", "10m", "32m"):
            shutil.copyfile(self.extent_dir / EXTENT_NAME.format(res=res), save_dir / EXTENT_NAME.format(res=res))
        self.extent_copies += 1


def open_accessor(resolution: int, cube_dir: Path, backend: str) -> tuple[Any, float, float]:
    """The peer's accessor on `cube_dir` and its empty cube (created when absent, as DARTS's pipelines do).

    Returns (accessor, seconds to build the accessor, seconds to create the cube or 0 when it existed).
    """
    import smart_geocubes

    cls = {2: smart_geocubes.ArcticDEM2m, 10: smart_geocubes.ArcticDEM10m, 32: smart_geocubes.ArcticDEM32m}[resolution]
    started = time.perf_counter()
    accessor = cls(cube_dir, backend=backend)
    opened = time.perf_counter() - started
    created = 0.0
    if not accessor.created:
        started = time.perf_counter()
        accessor.create(overwrite=False)
        created = time.perf_counter() - started
    return accessor, opened, created


def reference_geobox(accessor: Any, bounds: list[float], resolution: int) -> Any:
    """The geobox DARTS hands the accessor: the caller's, taken to the cube's CRS and resolution (buffer 0)."""
    from odc.geo.geobox import GeoBox

    geobox = GeoBox.from_bbox(tuple(bounds), "EPSG:3413", resolution=resolution)
    return geobox.to_crs(accessor.extent.crs, resolution=accessor.extent.resolution.x).pad(0)


def timed_load(accessor: Any, geobox: Any) -> tuple[Any, float, float]:
    """`accessor.load(geobox, persist=True)`, its seconds and the CPU seconds of this process's threads over it
    (the figure a busy shared machine distorts least)."""
    started, cpu = time.perf_counter(), time.process_time()
    dataset = accessor.load(geobox, persist=True)
    return dataset, time.perf_counter() - started, time.process_time() - cpu


def save_arrays(dataset: Any, out_dir: Path) -> dict[str, Any]:
    """dem, datamask and the x/y coordinates as .npy, exactly as the peer returned them; their description."""
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    described: dict[str, Any] = {}
    for name in ("dem", "datamask"):
        values = dataset[name].values
        np.save(out_dir / f"{name}.npy", values)
        described[name] = {"dtype": str(values.dtype), "attrs": {k: str(v) for k, v in dataset[name].attrs.items()}}
    for name in ("x", "y"):
        np.save(out_dir / f"{name}.npy", dataset[name].values)
    return described


def cube_codecs(accessor: Any) -> dict[str, Any]:
    """Each variable's chunk shape, fill value and codec chain as the peer wrote them into its cube."""
    group = accessor.open_zarr()
    out = {}
    for name in ("dem", "datamask"):
        array = group[name]
        meta = array.metadata.to_dict()
        out[name] = {"chunks": list(array.chunks), "fill_value": str(meta.get("fill_value")),
                     "codecs": meta.get("codecs")}
    return out


def backend_steps(accessor: Any) -> list[dict[str, Any]]:
    """The peer's own record of each download and write (its backend's event list), in seconds."""
    events = accessor.backend._events
    starts = {(e["action"].removeprefix("start_"), e["patch_id"]): e["time"] for e in events
              if e["action"].startswith("start_")}
    steps = []
    for event in events:
        if event["action"].startswith("end_"):
            action = event["action"].removeprefix("end_")
            began = starts.get((action, event["patch_id"]))
            if began is not None:
                steps.append({"action": action, "patch": event["patch_id"],
                              "seconds": round((event["time"] - began).total_seconds(), 3)})
    return steps


def run(args: dict[str, Any]) -> dict[str, Any]:
    """Build the accessor, load the geobox (cold or warm, whatever the cube holds), then `warm_runs` more times."""
    started = time.perf_counter()
    import odc.stac
    import smart_geocubes.datasets.arcticdem as peer_arcticdem

    imported = time.perf_counter() - started
    aux_dir = Path(args["aux_dir"])
    aux_dir.mkdir(parents=True, exist_ok=True)
    os.environ["SMART_GEOCUBES_AUX"] = str(aux_dir)
    patches = LoopbackPatches(peer_arcticdem, args["stac_url"], Path(args["extent_dir"]))
    odc.stac.configure_rio(cloud_defaults=True, aws={"aws_unsigned": True})
    cube_dir = Path(args["cube_dir"])
    existed = cube_dir.exists()
    accessor, opened, created = open_accessor(args["resolution"], cube_dir, args.get("backend", "simple"))
    geobox = reference_geobox(accessor, args["bounds"], args["resolution"])
    patches_before = accessor.loaded_patches()
    dataset, first, first_cpu = timed_load(accessor, geobox)
    described = save_arrays(dataset, Path(args["out_dir"]))
    warm = [timed_load(accessor, geobox)[1:] for _ in range(int(args.get("warm_runs", 0)))]
    x, y = dataset.x.values, dataset.y.values
    return {
        "load_seconds": first, "load_cpu_seconds": first_cpu, "warm_seconds": [wall for wall, _ in warm],
        "warm_cpu_seconds": [cpu for _, cpu in warm], "import_seconds": imported, "open_seconds": opened,
        "create_seconds": created, "cube_existed": existed, "patches_before": patches_before,
        "patches_after": accessor.loaded_patches(), "shape": list(dataset.dem.shape),
        "x_first": float(x[0]), "x_last": float(x[-1]), "y_first": float(y[0]), "y_last": float(y[-1]),
        "reference_geobox": {"shape": list(geobox.shape), "bounds": list(geobox.boundingbox)},
        "arrays": described, "cube": cube_codecs(accessor), "steps": backend_steps(accessor),
        "item_urls": patches.item_urls, "extent_copies": patches.extent_copies,
        "backend": args.get("backend", "simple"), "python": sys.version.split()[0],
        "versions": {name: version(name) for name in VERSIONED},
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
