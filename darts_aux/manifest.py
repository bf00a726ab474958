"""The chunk manifest: GeoParquet segments beside each cube, one row per chunk check or commit.

Writers never rewrite a shared file: each append is a new small segment, written under a temporary
name and renamed into place. Readers combine all segments and keep the latest row per chunk;
`compact` folds the segments into one file.
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

if TYPE_CHECKING:
    from .sources.base import ItemFailure

Status = Literal["partial", "full"]
SEGMENTS = "segments"
COMPACTED_PREFIX = "compacted-"
_FULL_COVERAGE = 1.0 - 1e-9

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
            "geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": CRS.from_user_input(crs).to_json_dict()},
            "covered": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"],
                        "crs": CRS.from_user_input(crs).to_json_dict()},
        },
    }
    return json.dumps(meta).encode()


class Manifest:
    """The manifest of one cube: a folder of GeoParquet files."""

    def __init__(self, root: Path, grid: ChunkGrid) -> None:
        self.root = Path(root)
        self.grid = grid

    @property
    def segments_dir(self) -> Path:
        """Where appends land."""
        return self.root / SEGMENTS

    def files(self) -> list[Path]:
        """Compacted files then segments, oldest first; temporary files are skipped."""
        compacted = sorted(self.root.glob(f"{COMPACTED_PREFIX}*.parquet")) if self.root.exists() else []
        segments = sorted(self.segments_dir.glob("*.parquet")) if self.segments_dir.exists() else []
        return [p for p in [*compacted, *segments] if not p.name.startswith(".")]

    # -- writing -----------------------------------------------------------------------------

    def append(self, records: Iterable[ChunkRecord]) -> Path | None:
        """Write records as one new segment (atomically); returns its path, None when empty."""
        table = self._to_table(list(records))
        if table.num_rows == 0:
            return None
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        return _write_atomically(table, self.segments_dir / name)

    def compact(self) -> int:
        """Fold every file into one compacted file of latest rows; returns how many files were folded.

        The caller holds the cube's commit lock, so no append races the deletion.
        """
        files = self.files()
        if len(files) <= 1:
            return 0
        latest = self._latest_table(self._read(files))
        name = f"{COMPACTED_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        _write_atomically(latest, self.root / name)
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

    # -- reading -----------------------------------------------------------------------------

    def latest(self, window: PixelWindow | None = None) -> dict[ChunkId, ChunkRecord]:
        """The latest record of every chunk (optionally only chunks touching a pixel window)."""
        table = self.latest_table(window)
        return {rec.chunk: rec for rec in _records(table)}

    def latest_table(self, window: PixelWindow | None = None) -> pa.Table:
        """Latest rows as an Arrow table (GeoParquet schema), optionally limited to a window's chunks."""
        for attempt in range(5):
            try:
                table = self._read(self.files())
                break
            except FileNotFoundError:  # a compaction removed a file between listing and reading
                if attempt == 4:
                    raise
        if window is not None and table.num_rows:
            table = table.filter(_window_filter(self.grid, window))
        return self._latest_table(table)

    def _read(self, files: list[Path]) -> pa.Table:
        tables = []
        for order, path in enumerate(files):
            try:
                part = pq.read_table(path, schema=SCHEMA)
            except FileNotFoundError:
                raise  # listed, then folded away by a compaction: the caller lists again
            except (pa.ArrowException, OSError, ValueError) as error:
                raise ManifestError(
                    f"manifest file {path} is unreadable ({error}); move it aside and run "
                    f"'darts-aux manifest rebuild' to restore the manifest from the store."
                ) from error
            tables.append(part.append_column("_order", pa.array([order] * part.num_rows, pa.int32())))
        if not tables:
            return SCHEMA.empty_table().append_column("_order", pa.array([], pa.int32()))
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
        table = pa.table(columns, schema=SCHEMA)
        return table.replace_schema_metadata({b"geo": _geo_metadata(self.grid.product.extent.crs)})


def _first_of_group(rows: pa.ChunkedArray, cols: pa.ChunkedArray) -> pa.Array:
    """Boolean mask marking the first row of each (row, col) run in a sorted table."""
    r = rows.to_numpy()
    c = cols.to_numpy()
    keep = np.ones(len(r), dtype=bool)
    keep[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    return pa.array(keep)


def _window_filter(grid: ChunkGrid, window: PixelWindow) -> pc.Expression:
    """Rows of the chunks a pixel window touches."""
    field_row, field_col = pc.field("chunk_row"), pc.field("chunk_col")
    expression = pc.scalar(False)
    for row0, row1, col0, col1 in grid.chunk_ranges(window):
        expression = expression | ((field_row >= row0) & (field_row <= row1) & (field_col >= col0) & (field_col <= col1))
    return expression


def _records(table: pa.Table) -> Iterable[ChunkRecord]:
    for row in table.drop_columns(["geometry"]).to_pylist():
        yield ChunkRecord(
            chunk=ChunkId(row["chunk_row"], row["chunk_col"]),
            status=row["status"],
            items_applied=tuple(row["items_applied"]),
            items_failed=tuple(row["items_failed"]),
            coverage=row["coverage"],
            checked_at=row["checked_at"],
            snapshot_id=row["snapshot_id"],
            covered=row["covered"],
            note=row["note"] or "",
        )


def _write_atomically(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file under a temporary name, fsync it, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ManifestError(f"could not write manifest file {path}: {error}; check free space and permissions.") from error
    return path
