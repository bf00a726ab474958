"""A load of a settled region imports no part of the fill stack: no Prefect, no STAC client, no Earth Engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.manifest import ChunkRecord, Manifest, utc_now
from darts_aux.products import arcticdem
from darts_aux.store import Cube

BOUNDS = (600_000.0, 3_150_000.0, 640_000.0, 3_190_000.0)
KEPT_OUT = ("prefect", "flows", "pystac_client", "pystac", "ee", "httpx", "geopandas", "matplotlib",
            "pydantic_settings", "darts_aux.fill", "darts_aux.sources", "darts_aux.settings", "darts_aux.staging")
"""What a fast-path load must not import: the fill and download stack, and the settings (pydantic)."""

CHILD = """
import json, sys
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
ds = load_arcticdem(GeoBox.from_bbox({bounds}, "EPSG:3413", resolution=32), {data_dir!r}, 32)
assert ds.dem.shape == ds.odc.geobox.shape
print(json.dumps(sorted(sys.modules)))
"""


def _settled_cube(data_dir: Path) -> None:
    """A 32 m cube whose manifest lists every chunk of BOUNDS as full (no pixels: reads give fill values)."""
    from odc.geo.geobox import GeoBox

    product = arcticdem(32)
    Cube.open_or_create(data_dir, product)
    grid = ChunkGrid(product)
    window = roi_window(GeoBox.from_bbox(BOUNDS, "EPSG:3413", resolution=32), product.extent)
    cube_manifest = Manifest(data_dir / product.key / "manifest", grid)
    cube_manifest.append([ChunkRecord(c, "full", ("item",), (), 1.0, utc_now(), "SNAP") for c in grid.chunks(window)])


def test_settled_load_in_a_fresh_process_imports_no_fill_stack(tmp_path: Path) -> None:
    _settled_cube(tmp_path)
    code = CHILD.format(bounds=BOUNDS, data_dir=str(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DARTS_AUX_STAC_URL": "http://127.0.0.1:9/unused/"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    imported = sorted(m for m in loaded if any(m == k or m.startswith(k + ".") for k in KEPT_OUT))
    assert imported == []
