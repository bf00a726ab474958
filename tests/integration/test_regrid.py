"""A cube filled in 5000² px chunks (before fills went per zarr chunk) is refused, then carried over by a rebuild."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux import load_arcticdem
from darts_aux.cli import app
from darts_aux.errors import DataDirError
from darts_aux.fill import FillContext, run_inline
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.location import as_location
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.settings import get_settings
from darts_aux.store import cube_paths

PRODUCT = arcticdem(32)
LEGACY = replace(PRODUCT, fill_chunk=5000)
ROI = GeoBox.from_bbox((785_000, 3_130_000, 810_000, 3_155_000), "EPSG:3413", resolution=32)
EAST_EDGE_ROI = GeoBox.from_bbox((880_000, 3_150_000, 920_000, 3_170_000), "EPSG:3413", resolution=32)  # partial


def test_a_cube_of_5000_px_chunks_is_refused_then_carried_over_by_a_rebuild(
        use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    legacy_dir, fresh_dir = tmp_path / "legacy", tmp_path / "fresh"
    ctx = FillContext(LEGACY, as_location(legacy_dir), get_settings())
    for geobox in (ROI, EAST_EDGE_ROI):
        run_inline(ctx, roi_window(geobox, LEGACY.extent))
    paths = cube_paths(legacy_dir, PRODUCT)
    old_grid, new_grid = ChunkGrid(LEGACY), ChunkGrid(PRODUCT)
    old_rows = {c: r for c, r in Manifest(paths.manifest, old_grid).latest().items() if r.snapshot_id}
    assert {r.status for r in old_rows.values()} == {"full", "partial"}
    marker = json.loads(paths.marker.read_text())
    del marker["fill_chunk"]  # as cubes made before the marker recorded their grid
    paths.marker.write_text(json.dumps(marker))

    with pytest.raises(DataDirError, match=r"5000² px.*1000² px.*darts-aux manifest rebuild --data-dir"):
        load_arcticdem(ROI, legacy_dir, 32)
    result = CliRunner().invoke(app, ["manifest", "rebuild", "--data-dir", str(legacy_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(paths.marker.read_text())["fill_chunk"] == 1000

    new_rows = Manifest(paths.manifest, new_grid).latest()
    expected_chunks = {sub for chunk in old_rows for sub in new_grid.chunks(old_grid.window(chunk))}
    assert set(new_rows) == expected_chunks and len(expected_chunks) > 25 * len(old_rows) * 0.5
    for old in old_rows.values():
        covered = old.covered_geometry(old_grid)
        for sub in new_grid.chunks(old_grid.window(old.chunk)):
            footprint = new_grid.footprint(sub)
            share = covered.intersection(footprint).area / footprint.area
            whole = old.status == "full" or (share >= 1 - 1e-9 and not old.items_failed)
            row = new_rows[sub]
            assert row.status == ("full" if whole else "partial"), (old, sub, share)
            assert (row.items_applied, row.items_failed, row.snapshot_id) == (
                old.items_applied, old.items_failed, old.snapshot_id)
            assert abs(row.coverage - (1.0 if old.status == "full" else share)) < 1e-9
    assert {r.status for r in new_rows.values()} == {"full", "partial"}

    use_catalog.reset_log()
    carried = load_arcticdem(ROI, legacy_dir, 32)
    assert use_catalog.requests() == [], "the carried-over manifest settles the region"
    fresh = load_arcticdem(ROI, fresh_dir, 32)
    for name in ("dem", "datamask"):
        np.testing.assert_array_equal(carried[name].values, fresh[name].values)
