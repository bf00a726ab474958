"""Manifest: appends as segments, latest row wins, compaction keeps the latest rows, GeoParquet opens."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from darts_aux.errors import ManifestError
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow
from darts_aux.manifest import ChunkRecord, Manifest, failure_note, status_for, union_coverage, utc_now
from darts_aux.products import Product, arcticdem, tcvis
from darts_aux.sources.base import ItemFailure


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


def test_union_coverage_adds_what_each_writer_saw(manifest: Manifest) -> None:
    grid, chunk = manifest.grid, ChunkId(4, 4)
    left, bottom, right, top = grid.footprint(chunk).bounds
    middle = (left + right) / 2
    first_cov, first_wkb = union_coverage(grid, chunk, None, shapely.box(left, bottom, middle, top))
    assert first_cov == pytest.approx(0.5) and first_wkb is not None
    first = ChunkRecord(chunk, status_for(first_cov, ()), ("west",), (), first_cov, utc_now(), "S1", first_wkb)
    cov, covered = union_coverage(grid, chunk, first, shapely.box(middle, bottom, right + 1e5, top))
    assert cov == 1.0 and covered is None
    assert status_for(cov, ()) == "full"


def test_union_coverage_of_a_record_without_geometry_is_a_lower_bound(manifest: Manifest) -> None:
    grid, chunk = manifest.grid, ChunkId(4, 4)
    legacy = ChunkRecord(chunk, "partial", ("a",), (), 0.7, utc_now(), "S1")
    left, bottom, right, top = grid.footprint(chunk).bounds
    cov, _ = union_coverage(grid, chunk, legacy, shapely.box(left, bottom, left + (right - left) / 10, top))
    assert cov == pytest.approx(0.7)


def test_covered_geometry_and_note_survive_a_round_trip(manifest: Manifest) -> None:
    grid, chunk = manifest.grid, ChunkId(1, 2)
    left, bottom, right, top = grid.footprint(chunk).bounds
    cov, wkb = union_coverage(grid, chunk, None, shapely.box(left, bottom, right, (bottom + top) / 2))
    failures = [ItemFailure("t1", "HTTP 503 after 4 attempts", True)]
    record = ChunkRecord(chunk, "partial", ("t0",), ("t1",), cov, utc_now(), "S", wkb, failure_note(failures))
    manifest.append([record])
    back = manifest.latest()[chunk]
    assert back == record
    assert back.note == "t1: HTTP 503 after 4 attempts"
    assert back.covered_geometry(grid).area == pytest.approx(grid.footprint(chunk).area / 2)
    frame = gpd.read_parquet(manifest.files()[0])
    assert frame.loc[0, "covered"].area == pytest.approx(grid.footprint(chunk).area / 2)


@pytest.mark.parametrize(("product", "epsg"), [(arcticdem(32), 3413), (tcvis(), 4326)], ids=["arcticdem", "tcvis"])
def test_a_compacted_manifest_is_geoparquet_with_its_crs(tmp_path: Path, product: Product, epsg: int) -> None:
    manifest = Manifest(tmp_path / "manifest", ChunkGrid(product))
    grid, chunks = manifest.grid, [ChunkId(1, 2), ChunkId(1, 3), ChunkId(2, 2)]
    left, bottom, right, top = grid.footprint(chunks[0]).bounds
    _, half = union_coverage(grid, chunks[0], None, shapely.box(left, bottom, right, (bottom + top) / 2))
    manifest.append([replace(_record(chunks[0]), covered=half)])
    for minute, chunk in enumerate(chunks[1:], start=1):
        manifest.append([_record(chunk, "full", minute)])
    assert manifest.compact() == 3
    (compacted,) = manifest.files()
    assert compacted.name.startswith("compacted-")
    frame = gpd.read_parquet(compacted)
    assert frame.crs.to_epsg() == epsg
    assert frame.chunk_id.tolist() == [str(c) for c in chunks]
    for chunk, footprint in zip(chunks, frame.geometry):
        assert footprint.equals(grid.footprint(chunk))
    assert frame.status.tolist() == ["partial", "full", "full"]
    assert frame.covered.iloc[0].area == pytest.approx(grid.footprint(chunks[0]).area / 2)
    assert frame.covered.crs.to_epsg() == epsg


def test_segments_over_a_compacted_file_follow_the_latest_row_rule(manifest: Manifest) -> None:
    """Segments after a compacted file replace its rows when newer or equal, never when older (a segment that a
    compaction on object storage did not see), also through a window and a second compaction."""
    import random

    rng = random.Random(7)
    start = utc_now()
    written: list[tuple[int, ChunkRecord]] = []  # (file order, record): the oracle keeps every row written

    def append(records: list[ChunkRecord]) -> None:
        manifest.append(records)
        written.append((len(written), records[0]))
        written.extend((len(written), record) for record in records[1:])

    chunks = [ChunkId(r, c) for r in range(12) for c in range(12)]
    for chunk in chunks:
        append([replace(_record(chunk, rng.choice(["partial", "full"])), checked_at=start + timedelta(minutes=10))])
    manifest.compact()
    shuffled = rng.sample(chunks, len(chunks))
    ties, newer, older = shuffled[:5], shuffled[5:25], shuffled[25:35]
    fresh = [ChunkId(20 + i, 3) for i in range(4)]
    for group, minutes in ((ties, 10), (newer, 20), (older, 5), (fresh, 1)):
        append([replace(_record(c, "full", items=("late", str(minutes))), checked_at=start + timedelta(minutes=minutes))
                for c in group])
    order = {id(record): index for index, record in written}
    expected: dict[ChunkId, ChunkRecord] = {}
    for record in (r for _, r in written):
        best = expected.get(record.chunk)
        if best is None or (record.checked_at, order[id(record)]) >= (best.checked_at, order[id(best)]):
            expected[record.chunk] = record

    assert len(manifest.files()) == 5
    latest = manifest.latest()
    assert latest == expected
    assert all(latest[c].items_applied == ("late", "10") for c in ties)
    assert all(latest[c].items_applied == ("a",) for c in older)
    table = manifest.latest_table()
    assert table.num_rows == len(expected)
    assert sorted(zip(table.column("chunk_row").to_pylist(), table.column("chunk_col").to_pylist(), strict=True)) == \
        sorted((c.row, c.col) for c in expected)
    grid = manifest.grid
    window = PixelWindow(2 * grid.chunk, 5 * grid.chunk, 3 * grid.chunk, 9 * grid.chunk)
    assert manifest.latest(window) == {c: r for c, r in expected.items() if 2 <= c.row < 5 and 3 <= c.col < 9}
    assert manifest.compact() == 5
    compacted = manifest.latest_table()
    keys = list(zip(compacted.column("chunk_row").to_pylist(), compacted.column("chunk_col").to_pylist(), strict=True))
    assert keys == sorted(keys)  # a compacted file is sorted by chunk, so a window reads few row groups
    assert manifest.latest() == expected


def test_chunks_with_status_reads_the_latest_rows(manifest: Manifest) -> None:
    a, b, c = ChunkId(0, 1), ChunkId(2, 0), ChunkId(1, 5)
    manifest.append([_record(a, "partial"), _record(b, "partial"), _record(c, "full")])
    manifest.compact()
    manifest.append([_record(b, "full", minutes=1), _record(c, "partial", minutes=1)])
    assert manifest.chunks_with_status("partial") == [a, c]
    assert manifest.chunks_with_status("full") == [b]
    assert Manifest(manifest.root / "none", manifest.grid).chunks_with_status("partial") == []


def test_latest_table_of_some_columns_has_the_same_rows(manifest: Manifest) -> None:
    for minute in range(3):
        manifest.append([_record(ChunkId(0, c), "full" if c < minute else "partial", minute) for c in range(4)])
    whole = manifest.latest_table()
    part = manifest.latest_table(columns=("status",))
    assert part.column_names == ["chunk_row", "chunk_col", "status", "checked_at"]
    assert part.to_pylist() == whole.select(part.column_names).to_pylist()
    assert part.column("status").to_pylist() == ["full", "full", "partial", "partial"]
