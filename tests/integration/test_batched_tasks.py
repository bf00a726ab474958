"""Prefect fills batch chunks into download/commit tasks: names, exact pixels, and one bad chunk costs no other."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.errors import SourceDataError
from darts_aux.grid import ChunkGrid, roi_window, window_bounds
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.stac_items import render_item
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.settings import reload_settings
from darts_aux.store import cube_paths

from ._faults import ServedItems
from .conftest import CATALOG_ROOT, formula_oracle

PRODUCT = arcticdem(10)
BROKEN, GOOD = TileRef.parse("72_47_10m_v4.1"), TileRef.parse("72_48_10m_v4.1")
# 10 m chunks are 50 km: this ROI spans 3 × 2 of them, some over the broken tile, some over the good one only.
ROI = GeoBox.from_bbox((660_000, 3_150_000, 790_000, 3_190_000), "EPSG:3413", resolution=10)


def _task_run_names(flow_run_id: object, expected: int) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 30  # task-run states reach the server as events, a little after the flow
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if len(runs) >= expected or time.monotonic() > deadline:
            return sorted(run.name for run in runs)
        time.sleep(0.5)


def _overlaps(grid: ChunkGrid, chunk: object, tile: TileRef) -> bool:
    left, bottom, right, top = window_bounds(PRODUCT.extent, grid.window(chunk))  # type: ignore[arg-type]
    t_left, t_bottom, t_right, t_top = tile.bounds
    return left < t_right and t_left < right and bottom < t_top and t_bottom < top


def test_a_batch_commits_its_good_chunks_when_one_chunk_cannot_be_read(
    catalog: LocalCatalog, forget_new_flow_runs: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    grid = ChunkGrid(PRODUCT)
    window = roi_window(ROI, PRODUCT.extent)
    chunks = grid.chunks(window)
    bad = sorted(c for c in chunks if _overlaps(grid, c, BROKEN))
    good = sorted(c for c in chunks if c not in bad)
    assert len(bad) >= 2 and len(good) >= 2
    data_dir = tmp_path / "data"
    with ServedItems(tmp_path / "served", lambda url: [render_item(BROKEN, url), render_item(GOOD, url)],
                     [CATALOG_ROOT]) as served:
        shadow = served.files_dir / BROKEN.asset_relpath("dem")
        shadow.parent.mkdir(parents=True, exist_ok=True)
        shadow.write_text("<!doctype html><html><body>moved</body></html>")
        monkeypatch.setenv("DARTS_AUX_STAC_URL", served.stac_url)
        monkeypatch.setenv("DARTS_AUX_CHUNKS_PER_TASK", str(len(chunks)))  # every chunk in one batch
        reload_settings()
        with get_client(sync_client=True) as client:
            before = {run.id for run in client.read_flow_runs()}
        with pytest.raises(SourceDataError, match="is not a GeoTIFF"):
            load_arcticdem(ROI, data_dir, 10)
        with get_client(sync_client=True) as client:
            (run,) = [r for r in client.read_flow_runs() if r.id not in before]
        assert run.state and run.state.is_failed()
        first = min(chunks, key=lambda c: (c.row, c.col))
        names = _task_run_names(run.id, 3)
        label = f"{first}+{len(chunks) - 1}"
        assert names == ["commit-" + label, "discover-arcticdem-10m", "download-" + label]

        rows = Manifest(cube_paths(data_dir, PRODUCT).manifest, grid).latest()
        assert sorted(rows) == good, "every chunk over the good tile only is committed; none over the broken one"
        assert all(rows[c].items_applied == (GOOD.item_id,) and rows[c].status == "full" for c in good)
        for chunk in good:
            area = grid.window(chunk)
            ds = load_arcticdem(GeoBox.from_bbox(window_bounds(PRODUCT.extent, area), "EPSG:3413", resolution=10),
                                data_dir, 10)
            dem, mask = formula_oracle(catalog, 10, area, items=[GOOD.item_id])
            np.testing.assert_array_equal(ds.dem.values, dem)
            np.testing.assert_array_equal(ds.datamask.values, mask)
