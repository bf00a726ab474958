"""What a data directory holds: one summary row per cube, and manifest upkeep across cubes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .claims import CLAIMS_DIR, DEFAULT_LEASE_SECONDS, ClaimHolder, live_claims
from .grid import ChunkGrid, ChunkId
from .location import DataLocation, S3Location
from .manifest import ChunkRecord, Manifest, status_for, union_coverage
from .products import Product
from .store import LEGACY_FILL_CHUNK, Cube, check_cube_folder, cube_exists, cube_paths, record_fill_chunk


@dataclass(frozen=True)
class CubeStatus:
    """A cube's completeness and size."""

    product: Product
    full: int
    partial: int
    bytes_on_disk: int
    last_update: datetime | None
    manifest_files: tuple[DataLocation, ...]
    downloading: tuple[ClaimHolder, ...] = ()
    """Chunks running fills are downloading now (their live claims)."""


def known_products() -> list[Product]:
    """Every product a data directory may hold: the built-in ones, then registered and installed ones."""
    from .registry import known_products as every_product

    return every_product()


def present_products(data_dir: DataLocation) -> Iterator[Product]:
    """The cubes that exist in the data directory: products, and each time step of a product with a time axis."""
    for product in known_products():
        cubes = [product.at(step.label) for step in product.time_steps] if product.has_time_axis else [product]
        yield from (cube for cube in cubes if cube_exists(data_dir, cube))


def cube_statuses(data_dir: DataLocation, lease: float = DEFAULT_LEASE_SECONDS) -> list[CubeStatus]:
    """One status row per cube present (`lease`: how old a chunk claim may be and still count as downloading)."""
    import pyarrow.compute as pc

    from .cube_coverage import latest_table

    rows = []
    for product in present_products(data_dir):
        paths = cube_paths(data_dir, product)
        check_cube_folder(data_dir, product)  # as `coverage()` does: a cube of another layout is refused, not read
        table = latest_table(data_dir, product, columns=("status",))  # the rows `coverage()` returns, counted
        counts = {c["values"]: c["counts"] for c in pc.value_counts(table.column("status")).to_pylist()}
        last = pc.max(table.column("checked_at")).as_py() if table.num_rows else None
        files = tuple(Manifest(paths.manifest, ChunkGrid(product)).files())
        claims = tuple(live_claims(paths.root / CLAIMS_DIR, lease))
        rows.append(CubeStatus(product, int(counts.get("full", 0)), int(counts.get("partial", 0)),
                               _bytes_under(paths.root), last, files, claims))
    return rows


def _bytes_under(root: DataLocation) -> int:
    """Total size of the files (or objects) under a cube folder."""
    if isinstance(root, S3Location):
        return sum(stat.st_size for _, stat in root.rglob_stats())
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def compact_all(data_dir: DataLocation) -> list[tuple[str, int]]:
    """Compact every cube's manifest under its commit lock."""
    done = []
    for product in present_products(data_dir):
        cube = Cube.open(data_dir, product)
        with cube.commit_lock():
            done.append((product.key, Manifest(cube.paths.manifest, ChunkGrid(product)).compact()))
    return done


def records_from_history(cube: Cube) -> list[ChunkRecord]:
    """The latest chunk records the store's own commit metadata holds (newest commit per chunk wins).

    Rows committed on another fill-chunk grid (cubes filled in 5000² px chunks before) are split into the
    chunks of the cube's grid (`split_record`).
    """
    grid = ChunkGrid(cube.product)
    latest: dict[ChunkId, ChunkRecord] = {}
    for snapshot in cube.history():  # newest first
        meta = snapshot.metadata or {}
        made_on = ChunkGrid(replace(cube.product, fill_chunk=int(meta.get("fill_chunk", LEGACY_FILL_CHUNK))))
        for row in commit_rows(meta):
            record = ChunkRecord(
                chunk=ChunkId.parse(row["chunk"]),
                status=row["status"],
                items_applied=tuple(row.get("items_applied", ())),
                items_failed=tuple(row.get("items_failed", ())),
                coverage=float(row.get("coverage", 0.0)),
                checked_at=snapshot.written_at.astimezone(UTC),
                snapshot_id=snapshot.id,
                covered=bytes.fromhex(row["covered"]) if row.get("covered") else None,
                note=str(row.get("note") or ""),
            )
            for part in split_record(record, made_on, grid):
                latest.setdefault(part.chunk, part)
    return sorted(latest.values(), key=lambda record: record.chunk)


def split_record(record: ChunkRecord, old: ChunkGrid, new: ChunkGrid) -> list[ChunkRecord]:
    """A record of a chunk of `old` as records of the chunks of `new` inside it (old's chunk a multiple of new's).

    A full chunk gives full sub-chunks; a partial one gives sub-chunks whose coverage is their share of its
    covered part (full where that share is whole and no read failed).
    """
    if old.chunk == new.chunk:
        return [record]
    covered = record.covered_geometry(old)
    parts = []
    for chunk in new.chunks(old.window(record.chunk)):
        if record.status == "full":
            parts.append(replace(record, chunk=chunk, coverage=1.0, covered=None))
            continue
        coverage, part = union_coverage(new, chunk, None, covered)
        parts.append(replace(record, chunk=chunk, status=status_for(coverage, record.items_failed), coverage=coverage,
                             covered=part))
    return parts


def commit_rows(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The chunk rows a commit's metadata holds: a list ("chunks" commits), or the one chunk of older cubes."""
    if meta.get("kind") == "chunks":
        return [row for row in meta.get("chunks", ()) if isinstance(row, Mapping) and "chunk" in row]
    if meta.get("kind") == "chunk" and "chunk" in meta:
        return [meta]
    return []


def rebuild_all(data_dir: DataLocation) -> list[tuple[str, int]]:
    """Replace every cube's manifest by one rebuilt from the store's history; returns chunks recorded per cube.

    Partial chunks that were only searched (never committed) are not in the history: they are simply
    searched again by the next fill. A cube filled on another fill-chunk grid is carried over to the product's
    grid (its pixels are the same: the zarr chunks did not change), and its marker records the new grid last.
    """
    done = []
    for product in present_products(data_dir):
        cube = Cube.open(data_dir, product, any_grid=True)
        with cube.commit_lock():
            records = records_from_history(cube)
            manifest = Manifest(cube.paths.manifest, ChunkGrid(product))
            old = manifest.files()
            manifest.append(records)
            for path in old:
                path.unlink(missing_ok=True)
            manifest.compact()
            record_fill_chunk(cube.paths, product)
        done.append((product.key, len(records)))
    return done
