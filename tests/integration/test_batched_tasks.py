"""Prefect fills batch chunks into download/commit tasks: names, exact pixels, and one bad chunk costs no other."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem, staging
from darts_aux.cubes import commit_rows
from darts_aux.errors import SourceDataError, StoreError
from darts_aux.fill import arcticdem_context, chunks_per_commit, commit_batch, discover, download_batch
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow, roi_window, window_bounds
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.stac_items import render_item
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.settings import reload_settings
from darts_aux.store import Cube, cube_paths

from ._faults import ServedItems
from .conftest import CATALOG_ROOT, formula_oracle

PRODUCT = arcticdem(10)
BROKEN, GOOD = TileRef.parse("72_47_10m_v4.1"), TileRef.parse("72_48_10m_v4.1")
# 10 m chunks are 10 km, their borders at x = -4,000,100 + 10,000·k and y = 4,100,100 − 10,000·k: this ROI spans
# columns 468…473 (x 679,900 … 739,900) and rows 90…91 (y 3,180,100 … 3,200,100). Columns 468–470 reach the broken
# tile (x ≤ 700,100), columns 471–473 lie over the good one only; the rows reach the 10 m data around (700, 3200) km.
ROI = GeoBox.from_bbox((680_000, 3_181_000, 730_000, 3_199_000), "EPSG:3413", resolution=10)


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
    assert [c.col for c in bad] == [468, 469, 470] * 2 and [c.col for c in good] == [471, 472, 473] * 2
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
        commits = {s.id: sorted(row["chunk"] for row in commit_rows(s.metadata or {}))
                   for s in Cube.open(data_dir, PRODUCT).history()}
        per_commit = chunks_per_commit(PRODUCT)
        expected = [sorted(str(c) for c in good[i:i + per_commit]) for i in range(0, len(good), per_commit)]
        assert sorted(c for c in commits.values() if c) == sorted(expected), "the batch's chunks, grouped per commit"
        assert all(str(c) in commits[rows[c].snapshot_id] for c in good), "each row names the commit holding it"
        for chunk in good:
            area = grid.window(chunk)
            ds = load_arcticdem(GeoBox.from_bbox(window_bounds(PRODUCT.extent, area), "EPSG:3413", resolution=10),
                                data_dir, 10)
            dem, mask = formula_oracle(catalog, 10, area, items=[GOOD.item_id])
            np.testing.assert_array_equal(ds.dem.values, dem)
            np.testing.assert_array_equal(ds.datamask.values, mask)


def test_a_batch_whose_joint_commit_fails_commits_each_sound_chunk_alone(use_catalog: LocalCatalog,
                                                                       tmp_path: Path) -> None:
    ctx = arcticdem_context(32, tmp_path)
    grid = ctx.grid
    # 1000² px × 5 bytes = 5 MB per 32 m chunk: 256 MiB would take 53 of them, so the cap of 16 per commit applies.
    per_commit = chunks_per_commit(ctx.product)
    assert per_commit == 16
    # Two rows of chunks, one commit's worth and two more: the batch is committed as 16 chunks, then 2.
    first, last = grid.window(ChunkId(29, 140)), grid.window(ChunkId(30, 140 + per_commit // 2))
    window = PixelWindow(first.row0, last.row1, first.col0, last.col1)
    downloaded = download_batch(ctx, discover(ctx, window).jobs)
    assert len(downloaded) == per_commit + 2 and all(o.staged and o.staged.path for o in downloaded)
    damaged = downloaded[1].staged
    assert damaged is not None and damaged.path
    staging.locate(ctx.paths.staging, damaged.path).write_bytes(b"not an npz file")

    outcomes = commit_batch(ctx, downloaded)
    assert [o.error is not None for o in outcomes] == [i == 1 for i in range(per_commit + 2)]
    assert isinstance(outcomes[1].error, StoreError) and "downloads it again" in str(outcomes[1].error)
    rows = Manifest(ctx.paths.manifest, grid).latest()
    sound = [o.job.chunk for o in outcomes if o.error is None]
    assert sorted(rows) == sorted(sound) and all(rows[c].snapshot_id == o.record.snapshot_id  # type: ignore[union-attr]
                                                 for c, o in zip(sound, [o for o in outcomes if o.error is None]))
    cube = Cube.open(tmp_path, ctx.product)
    commits = sorted(sorted(row["chunk"] for row in commit_rows(s.metadata or {})) for s in cube.history())
    chunks = [str(o.job.chunk) for o in outcomes]
    # chunks 0…15 failed their joint commit (1 is damaged): each sound one committed alone; 16 and 17 together
    alone = [[chunk] for i, chunk in enumerate(chunks[:per_commit]) if i != 1]
    assert [c for c in commits if c] == sorted([*alone, sorted(chunks[per_commit:])])
    for chunk in sound:
        dem, mask = formula_oracle(use_catalog, 32, grid.window(chunk))
        stored = cube.read(grid.window(chunk))
        np.testing.assert_array_equal(stored["dem"], dem)
        np.testing.assert_array_equal(stored["datamask"], mask)
    left = sorted(p.name for p in Path(ctx.paths.staging).iterdir())
    assert left == [Path(damaged.path).name], "committed chunks leave no staged file"
