"""`darts-aux manifest rebuild`: the manifest comes back from the store's commit history."""

from __future__ import annotations

import shutil
from pathlib import Path

from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux import load_arcticdem
from darts_aux.cli import app
from darts_aux.grid import ChunkGrid
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.store import cube_paths

PRODUCT = arcticdem(32)
ROI = GeoBox.from_bbox((785_000, 3_130_000, 810_000, 3_155_000), "EPSG:3413", resolution=32)  # 4 chunks
EAST_EDGE_ROI = GeoBox.from_bbox((880_000, 3_150_000, 920_000, 3_170_000), "EPSG:3413", resolution=32)  # partial


def test_rebuild_restores_every_committed_row(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    load_arcticdem(ROI, tmp_path, 32)
    load_arcticdem(EAST_EDGE_ROI, tmp_path, 32)
    manifest = Manifest(cube_paths(tmp_path, PRODUCT).manifest, ChunkGrid(PRODUCT))
    before = manifest.latest()
    assert len(before) >= 4 and {r.status for r in before.values()} == {"full", "partial"}
    shutil.rmtree(manifest.root)

    result = CliRunner().invoke(app, ["manifest", "rebuild", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    after = manifest.latest()
    assert len(manifest.files()) == 1
    assert set(after) == {c for c, r in before.items() if r.snapshot_id}
    for chunk, row in after.items():
        old = before[chunk]
        assert (row.status, row.items_applied, row.items_failed, row.snapshot_id) == (
            old.status, old.items_applied, old.items_failed, old.snapshot_id)
        assert abs(row.coverage - old.coverage) < 1e-12

    use_catalog.reset_log()
    load_arcticdem(ROI, tmp_path, 32)
    assert use_catalog.requests() == [], "the rebuilt manifest settles the region again"
