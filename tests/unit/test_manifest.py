"""Manifest: appends as segments, latest row wins, compaction keeps the latest rows, GeoParquet opens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import geopandas as gpd
import pytest

from darts_aux.errors import ManifestError
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow
from darts_aux.manifest import ChunkRecord, Manifest, status_for, utc_now
from darts_aux.products import arcticdem


def _record(chunk: ChunkId, status: str = "partial", minutes: int = 0, items: tuple[str, ...] = ("a",)) -> ChunkRecord:
    return ChunkRecord(chunk, status, items, (), 0.5 if status == "partial" else 1.0,
                       utc_now() + timedelta(minutes=minutes), "SNAP")  # type: ignore[arg-type]


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return Manifest(tmp_path / "manifest", ChunkGrid(arcticdem(32)))


def test_empty_manifest_reads_as_empty(manifest: Manifest) -> None:
    assert manifest.latest() == {}


def test_latest_row_per_chunk_wins(manifest: Manifest) -> None:
    a, b = ChunkId(3, 4), ChunkId(3, 5)
    manifest.append([_record(a, "partial", 0), _record(b, "partial", 0)])
    manifest.append([_record(a, "full", 1, ("a", "b"))])
    latest = manifest.latest()
    assert latest[a].status == "full" and latest[a].items_applied == ("a", "b")
    assert latest[b].status == "partial"
    assert len(manifest.files()) == 2


def test_window_filter_selects_only_its_chunks(manifest: Manifest) -> None:
    grid = manifest.grid
    manifest.append([_record(ChunkId(r, c)) for r in range(3) for c in range(3)])
    window = PixelWindow(grid.chunk, grid.chunk + 1, 0, 2 * grid.chunk)  # chunk row 1, cols 0-1
    assert sorted(manifest.latest(window)) == [ChunkId(1, 0), ChunkId(1, 1)]


def test_compaction_folds_segments_and_keeps_latest(manifest: Manifest) -> None:
    for minute in range(5):
        manifest.append([_record(ChunkId(0, minute)), _record(ChunkId(1, 1), minutes=minute, items=(str(minute),))])
    before = manifest.latest()
    assert manifest.compact() == 5
    assert len(manifest.files()) == 1
    assert manifest.latest() == before
    assert manifest.latest()[ChunkId(1, 1)].items_applied == ("4",)


def test_geopandas_reads_a_coverage_map(manifest: Manifest) -> None:
    manifest.append([_record(ChunkId(2, 7), "full")])
    frame = gpd.read_parquet(manifest.files()[0])
    assert frame.crs.to_epsg() == 3413
    assert frame.geometry.iloc[0].equals(manifest.grid.footprint(ChunkId(2, 7)))
    assert frame.status.tolist() == ["full"]


def test_corrupt_segment_raises_a_manifest_error(manifest: Manifest) -> None:
    manifest.append([_record(ChunkId(0, 0))])
    manifest.files()[0].write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match="manifest rebuild"):
        manifest.latest()


def test_settled_and_status_rules() -> None:
    now = utc_now()
    old = ChunkRecord(ChunkId(0, 0), "partial", (), (), 0.2, now - timedelta(days=8), None)
    assert not old.is_settled(now, 7 * 86400)
    assert old.touched(now).is_settled(now, 7 * 86400)
    assert status_for(1.0, ()) == "full"
    assert status_for(1.0, ("x",)) == "partial"
    assert status_for(0.999, ()) == "partial"
