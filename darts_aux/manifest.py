"""The chunk manifest: GeoParquet segments beside each cube, one row per chunk check or commit.

Writers never rewrite a shared file: each append is a new small segment, written under a temporary
name and renamed into place (on object storage: one PUT under a unique name). Readers combine all
segments and keep the latest row per chunk; `compact` folds the segments into one file.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from .errors import ManifestError
from .grid import ChunkGrid, ChunkId, PixelWindow
from .location import DataLocation, S3Location, as_location

if TYPE_CHECKING:
    from .sources.base import ItemFailure

Status = Literal["partial", "full"]
SEGMENTS = "segments"
COMPACTED_PREFIX = "compacted-"
_FULL_COVERAGE = 1.0 - 1e-9
ROW_GROUP_ROWS = 8192
"""Rows per row group of a compacted file (sorted by chunk): a window's query reads one or two groups."""
ChunkRange = tuple[int, int, int, int]
"""Inclusive (row0, row1, col0, col1) chunk range."""

SCHEMA = pa.schema(
    [
        pa.field("chunk_row", pa.int32(), nullable=False),
        pa.field("chunk_col", pa.int32(), nullable=False),
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("items_applied", pa.list_(pa.string()), nullable=False),
        pa.field("items_failed", pa.list_(pa.string()), nullable=False),
        pa.field("coverage", pa.float64(), nullable=False),
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("snapshot_id", pa.string(), nullable=True),
        pa.field("geometry", pa.binary(), nullable=False),
        pa.field("covered", pa.binary(), nullable=True),
        pa.field("note", pa.string(), nullable=True),
    ]
)
LATEST_KEY_COLUMNS = ("chunk_row", "chunk_col", "checked_at")
"""What picks a chunk's latest row: every read of the latest rows includes these."""


def latest_columns(columns: Sequence[str]) -> list[str]:
    """`columns` and those that pick the latest row, in the schema's order."""
    return [name for name in SCHEMA.names if name in {*LATEST_KEY_COLUMNS, *columns}]


RECORD_COLUMNS: tuple[str, ...] = tuple(name for name in SCHEMA.names if name not in ("chunk_id", "geometry"))
"""What a ChunkRecord needs: the footprint and id follow from the chunk's row and column."""


@dataclass(frozen=True)
class ChunkRecord:
    """What the manifest knows of one chunk at one moment."""

    chunk: ChunkId
    status: Status
    items_applied: tuple[str, ...]
    """Source items whose pixels have been merged into the chunk."""
    items_failed: tuple[str, ...]
    """Items that intersect the chunk but could not be read after all retries."""
    coverage: float
    """Fraction of the chunk inside the footprints of the applied items."""
    checked_at: datetime
    snapshot_id: str | None
    """Store snapshot the chunk's pixels were last committed in (None: never committed)."""
    covered: bytes | None = None
    """WKB of the part of the chunk inside the applied items (None: all of it at coverage 1, none at 0)."""
    note: str = ""
    """Why the chunk is not full yet, when something failed (the reasons of the failed reads)."""

    def is_settled(self, now: datetime, revisit_seconds: float) -> bool:
        """Full, or partial but checked recently enough that searching again is pointless."""
        return self.status == "full" or (now - self.checked_at).total_seconds() < revisit_seconds

    def touched(self, when: datetime) -> ChunkRecord:
        """The same record, checked again at `when`."""
        return replace(self, checked_at=when)

    def covered_geometry(self, grid: ChunkGrid) -> shapely.Geometry:
        """The covered part of the chunk in the cube's CRS."""
        if self.covered is not None:
            return shapely.from_wkb(self.covered)
        return grid.footprint(self.chunk) if self.coverage >= _FULL_COVERAGE else shapely.Polygon()


def union_coverage(grid: ChunkGrid, chunk: ChunkId, previous: ChunkRecord | None,
                   fresh: shapely.Geometry) -> tuple[float, bytes | None]:
    """Coverage after adding `fresh` to what a chunk's previous record covered: (fraction, WKB or None).

    Writers that saw different catalogs each add their items' part, so the union, not the last
    writer's view, decides when a chunk is full. Records without a stored geometry count as a lower bound.
    """
    footprint = grid.footprint(chunk)
    union = shapely.union(previous.covered_geometry(grid), fresh) if previous else fresh
    union = shapely.intersection(union, footprint)
    fraction = float(union.area / footprint.area)
    if previous is not None:
        fraction = max(fraction, previous.coverage)
    whole_or_none = fraction >= _FULL_COVERAGE or union.is_empty
    return min(fraction, 1.0), None if whole_or_none else shapely.to_wkb(union)


def status_for(coverage: float, items_failed: Sequence[str]) -> Status:
    """`full` when the applied items cover the whole chunk and none failed, else `partial`."""
    return "full" if coverage >= _FULL_COVERAGE and not items_failed else "partial"


def failure_note(failures: Sequence[ItemFailure], earlier: str = "", limit: int = 1000) -> str:
    """One line naming each failed read and why (kept in the manifest beside `items_failed`)."""
    text = "; ".join(f"{f.item_id}: {f.reason}" for f in failures) or earlier
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, at microsecond precision (what Parquet stores)."""
    return datetime.now(UTC)


@lru_cache(maxsize=4)
def _geo_metadata(crs: str) -> bytes:
    """GeoParquet 1.1 file metadata so geopandas.read_parquet opens the manifest as a map."""
    from pyproj import CRS

    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                         "crs": CRS.from_user_input(crs).to_json_dict()},
            "covered": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"],
                        "crs": CRS.from_user_input(crs).to_json_dict()},
        },
    }
    return json.dumps(meta).encode()


class Manifest:
    """The manifest of one cube: a folder (or S3 prefix) of GeoParquet files."""

    def __init__(self, root: DataLocation | str, grid: ChunkGrid) -> None:
        self.root = as_location(root)
        self.grid = grid

    @property
    def segments_dir(self) -> DataLocation:
        """Where appends land."""
        return self.root / SEGMENTS

    def files(self) -> list[DataLocation]:
        """Compacted files then segments, oldest first; temporary files are skipped."""
        compacted = _sorted_glob(self.root, f"{COMPACTED_PREFIX}*.parquet")
        segments = _sorted_glob(self.segments_dir, "*.parquet")
        return [p for p in [*compacted, *segments] if not p.name.startswith(".")]

    # -- writing -----------------------------------------------------------------------------

    def append(self, records: Iterable[ChunkRecord]) -> DataLocation | None:
        """Write records as one new segment (atomically); returns its path, None when empty."""
        table = self._to_table(list(records))
        if table.num_rows == 0:
            return None
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        return self._write(table, self.segments_dir / name)

    def compact(self) -> int:
        """Fold every file into one compacted file of latest rows; returns how many files were folded.

        The caller holds the cube's commit lock, so no append races the deletion. On object storage
        there is no lock: only the files read are deleted (appends made meanwhile stay), and a file
        another compaction removed first ends this one (returns 0).
        """
        files = self.files()
        if len(files) <= 1:
            return 0
        try:
            latest = _sorted_by_chunk(self._latest_of(files, None, SCHEMA.names))
        except FileNotFoundError:
            return 0
        name = f"{COMPACTED_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        self._write(latest, self.root / name, row_group_size=ROW_GROUP_ROWS)
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

    def _write(self, table: pa.Table, path: DataLocation, row_group_size: int | None = None) -> DataLocation:
        """Write one manifest file atomically, always as GeoParquet (footprints and covered parts in the cube's CRS).

        Tables read back from files lose their schema metadata on the way, so the `geo` metadata is set
        here for every file written: segments and compacted files alike open in geopandas and QGIS.
        """
        geo = {b"geo": _geo_metadata(self.grid.product.extent.crs)}
        return _write_atomically(table.replace_schema_metadata(geo), path, row_group_size=row_group_size)

    # -- reading -----------------------------------------------------------------------------

    def latest(self, window: PixelWindow | None = None) -> dict[ChunkId, ChunkRecord]:
        """The latest record of every chunk (optionally only chunks touching a pixel window)."""
        table = self._latest(window, RECORD_COLUMNS)
        return {rec.chunk: rec for rec in _records(table)}

    def chunks_with_status(self, status: Status) -> list[ChunkId]:
        """Chunks whose latest row has this status, sorted; read from four columns, no records built.

        What the revisit flow asks of a whole manifest: at PGC's full coverage (5.7 M rows) building every
        record takes a minute, this a few seconds (`benchmarks/README.md`, target 5).
        """
        table = self.latest_table(columns=("status",))
        picked = table.filter(pc.equal(table.column("status"), status))
        pairs = zip(picked.column("chunk_row").to_pylist(), picked.column("chunk_col").to_pylist(), strict=True)
        return sorted(ChunkId(row, col) for row, col in pairs)

    def latest_table(self, window: PixelWindow | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Latest rows as an Arrow table (GeoParquet schema), optionally limited to a window's chunks.

        With `columns`, only those are read, plus the chunk's row and column and `checked_at` that pick the latest
        row: counting statuses needs no footprints, which are most of the bytes of a large manifest.
        """
        return self._latest(window, SCHEMA.names if columns is None else latest_columns(columns))

    def _latest(self, window: PixelWindow | None, columns: Sequence[str]) -> pa.Table:
        """Latest rows of some columns; with a window only the row groups that may hold its chunks are read."""
        ranges = None if window is None else self.grid.chunk_ranges(window)
        for _ in range(4):
            try:
                return self._latest_of(self.files(), ranges, columns)
            except FileNotFoundError:  # a compaction removed a file between listing and reading: list again
                continue
        return self._latest_of(self.files(), ranges, columns)

    def _latest_of(self, files: list[DataLocation], ranges: list[ChunkRange] | None,
                   columns: Sequence[str]) -> pa.Table:
        """Latest rows of these files. A compacted file already holds one row per chunk, sorted by chunk, so only
        the segments after it are sorted, and their rows replace the compacted rows they are newer than."""
        compacted = [p for p in files if p.name.startswith(COMPACTED_PREFIX)]
        if len(compacted) != 1 or files[0] != compacted[0]:
            return self._latest_table(self._read(files, ranges, columns))
        base = self._read(files[:1], ranges, columns).drop_columns(["_order"])
        if len(files) == 1:
            return base
        recent = self._latest_table(self._read(files[1:], ranges, columns))
        return _overlay(base, recent)

    def _read(self, files: list[DataLocation], ranges: list[ChunkRange] | None = None,
              columns: Sequence[str] = SCHEMA.names) -> pa.Table:
        """Rows of the files (those of chunks inside `ranges`, when given), tagged with their file's order."""
        schema = pa.schema([SCHEMA.field(name) for name in columns])
        tables = []
        segments = self.segments_dir
        for order, path in enumerate(files):
            if path == segments / path.name:  # written once under a unique name, never changed: read once per process
                part = _segment_table(path, tuple(schema.names))
                part = part if ranges is None else part.filter(_in_ranges(part, ranges))
            else:
                part = _read_file(path, schema, ranges)
            tables.append(part.append_column("_order", pa.array(np.full(part.num_rows, order, np.int32))))
        if not tables:
            return schema.empty_table().append_column("_order", pa.array([], pa.int32()))
        return pa.concat_tables(tables)

    @staticmethod
    def _latest_table(table: pa.Table) -> pa.Table:
        """One row per chunk: the one with the latest checked_at (later files win ties)."""
        if "_order" not in table.column_names:
            table = table.append_column("_order", pa.array([0] * table.num_rows, pa.int32()))
        if table.num_rows == 0:
            return table.drop_columns(["_order"])
        ordered = table.sort_by([("chunk_row", "ascending"), ("chunk_col", "ascending"),
                                 ("checked_at", "descending"), ("_order", "descending")])
        keep = _first_of_group(ordered.column("chunk_row"), ordered.column("chunk_col"))
        return ordered.filter(keep).drop_columns(["_order"])

    def _to_table(self, records: list[ChunkRecord]) -> pa.Table:
        footprints = [self.grid.footprint(r.chunk) for r in records]
        columns = {
            "chunk_row": pa.array([r.chunk.row for r in records], pa.int32()),
            "chunk_col": pa.array([r.chunk.col for r in records], pa.int32()),
            "chunk_id": pa.array([str(r.chunk) for r in records], pa.string()),
            "status": pa.array([r.status for r in records], pa.string()),
            "items_applied": pa.array([list(r.items_applied) for r in records], pa.list_(pa.string())),
            "items_failed": pa.array([list(r.items_failed) for r in records], pa.list_(pa.string())),
            "coverage": pa.array([r.coverage for r in records], pa.float64()),
            "checked_at": pa.array([r.checked_at for r in records], pa.timestamp("us", tz="UTC")),
            "snapshot_id": pa.array([r.snapshot_id for r in records], pa.string()),
            "geometry": pa.array(shapely.to_wkb(footprints).tolist() if records else [], pa.binary()),
            "covered": pa.array([r.covered for r in records], pa.binary()),
            "note": pa.array([r.note or None for r in records], pa.string()),
        }
        return pa.table(columns, schema=SCHEMA)


MAX_SLICED_ROWS = 1024
"""Rows `_overlay` cuts out of a compacted table by slicing it (no copy); beyond that it filters (one copy)."""


def _chunk_keys(table: pa.Table) -> np.ndarray:
    """One int64 per row that orders rows as (chunk_row, chunk_col) does (int32 columns: no two rows' ranges meet)."""
    rows = table.column("chunk_row").to_numpy().astype(np.int64)
    return rows * 2**32 + table.column("chunk_col").to_numpy().astype(np.int64)


def _overlay(base: pa.Table, recent: pa.Table) -> pa.Table:
    """Latest rows of a compacted table (one per chunk, sorted by chunk) and of the later segments' latest rows.

    A segment's row replaces the compacted row of its chunk unless it is older (a segment that a compaction on
    object storage did not see may be); on a tie the segment, the later file, wins. O(rows), no sort of the big
    table: the rows it loses are sliced out, and the segments' rows are added after it, sorted by chunk.
    """
    base_keys, recent_keys = _chunk_keys(base), _chunk_keys(recent)
    if len(base_keys) == 0:
        return recent
    at = np.minimum(np.searchsorted(base_keys, recent_keys), len(base_keys) - 1)
    shared = base_keys[at] == recent_keys
    base_times = base.column("checked_at").to_numpy().astype("datetime64[us]")
    recent_times = recent.column("checked_at").to_numpy().astype("datetime64[us]")
    recent_wins = ~shared | (recent_times >= base_times[at])
    replaced = np.unique(at[shared & recent_wins])
    kept_base = _without_rows(base, replaced)
    if recent_wins.all():
        return pa.concat_tables([kept_base, recent])
    return pa.concat_tables([kept_base, recent.filter(pa.array(recent_wins))])


def _sorted_by_chunk(table: pa.Table) -> pa.Table:
    """The rows sorted by chunk (as a compacted file stores them, so a window's query reads few row groups)."""
    keys = _chunk_keys(table)
    if bool(np.all(keys[1:] > keys[:-1])):
        return table
    return table.take(pa.array(np.argsort(keys, kind="stable")))


def _without_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The table without the given (sorted, unique) row positions."""
    if len(rows) == 0:
        return table
    if len(rows) > MAX_SLICED_ROWS:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        return table.filter(pa.array(keep))
    starts = np.concatenate([[0], rows + 1])
    stops = np.concatenate([rows, [table.num_rows]])
    return pa.concat_tables([table.slice(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True) if b > a]
                            or [table.slice(0, 0)])


def _first_of_group(rows: pa.ChunkedArray, cols: pa.ChunkedArray) -> pa.Array:
    """Boolean mask marking the first row of each (row, col) run in a sorted table."""
    r = rows.to_numpy()
    c = cols.to_numpy()
    keep = np.ones(len(r), dtype=bool)
    keep[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    return pa.array(keep)


def _read_file(path: DataLocation, schema: pa.Schema, ranges: list[ChunkRange] | None) -> pa.Table:
    """One file's rows in `schema` (columns it lacks are null); with ranges, only the rows of those chunks."""
    try:
        parquet = pq.ParquetFile(path.open_input_file() if isinstance(path, S3Location) else path)
        groups = _row_groups(parquet.metadata, ranges)
        present = set(parquet.schema_arrow.names)
        table = parquet.read_row_groups(groups, columns=[n for n in schema.names if n in present])
    except FileNotFoundError:
        raise  # listed, then folded away by a compaction: the caller lists again
    except (pa.ArrowException, OSError, ValueError) as error:
        raise ManifestError(
            f"manifest file {path} is unreadable ({error}); move it aside and run "
            f"'darts-aux manifest rebuild' to restore the manifest from the store."
        ) from error
    table = _conform(table, schema)
    return table if ranges is None else table.filter(_in_ranges(table, ranges))


@lru_cache(maxsize=1024)
def _segment_table(path: DataLocation, columns: tuple[str, ...]) -> pa.Table:
    """A segment's rows in these columns, cached: every commit reads the chunk's row from all the segments."""
    return _read_file(path, pa.schema([SCHEMA.field(name) for name in columns]), None)


def _row_groups(meta: pq.FileMetaData, ranges: list[ChunkRange] | None) -> list[int]:
    """Row groups that may hold chunks inside the ranges, judged by their chunk_row/chunk_col statistics."""
    every = list(range(meta.num_row_groups))
    if ranges is None:
        return every
    leaves = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    row_leaf, col_leaf = leaves.get("chunk_row"), leaves.get("chunk_col")
    if row_leaf is None or col_leaf is None:
        return every
    return [i for i in every if _may_hold(meta.row_group(i), row_leaf, col_leaf, ranges)]


def _may_hold(group: pq.RowGroupMetaData, row_leaf: int, col_leaf: int, ranges: list[ChunkRange]) -> bool:
    """False only when the group's statistics prove it holds no chunk of the ranges."""
    rows, cols = group.column(row_leaf).statistics, group.column(col_leaf).statistics
    if rows is None or cols is None or not (rows.has_min_max and cols.has_min_max):
        return True
    return any(rows.min <= r1 and rows.max >= r0 and cols.min <= c1 and cols.max >= c0 for r0, r1, c0, c1 in ranges)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with exactly the schema's columns and types (older files may lack newer nullable columns)."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _in_ranges(table: pa.Table, ranges: list[ChunkRange]) -> pa.Array:
    """Boolean mask of the rows whose chunk lies inside one of the inclusive ranges."""
    rows = table.column("chunk_row").to_numpy()
    cols = table.column("chunk_col").to_numpy()
    keep = np.zeros(len(rows), dtype=bool)
    for r0, r1, c0, c1 in ranges:
        keep |= (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
    return pa.array(keep)


def _records(table: pa.Table) -> list[ChunkRecord]:
    """ChunkRecords of a latest table, built column by column (row dicts are several times slower)."""
    names = ("chunk_row", "chunk_col", "status", "items_applied", "items_failed", "coverage", "checked_at",
             "snapshot_id", "covered", "note")
    columns = [table.column(name).to_pylist() for name in names]
    return [
        ChunkRecord(ChunkId(row, col), status, tuple(applied), tuple(failed), coverage, checked_at, snapshot,
                    covered, note or "")
        for row, col, status, applied, failed, coverage, checked_at, snapshot, covered, note in zip(*columns)
    ]


def _sorted_glob(folder: DataLocation, pattern: str) -> list[DataLocation]:
    """Entries of a folder matching a pattern, by name (none when the folder does not exist)."""
    if isinstance(folder, Path) and not folder.exists():
        return []
    return sorted(folder.glob(pattern), key=lambda p: p.name)


def _write_atomically(table: pa.Table, path: DataLocation, row_group_size: int | None = None) -> DataLocation:
    """Write a Parquet file under a temporary name, fsync it, then rename it into place (S3: one PUT)."""
    if isinstance(path, S3Location):
        try:
            pq.write_table(table, path.path, filesystem=path.fs, compression="zstd", row_group_size=row_group_size)
        except OSError as error:
            raise ManifestError(f"could not write manifest file {path}: {error}; check the bucket's permissions "
                                f"and the endpoint.") from error
        return path
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ManifestError(
            f"could not write manifest file {path}: {error}; check free space and permissions."
        ) from error
    return path
