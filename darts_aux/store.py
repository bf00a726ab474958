"""The Zarr cube in an icechunk repository: create (metadata only), commit whole chunks, read windows."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icechunk
import numpy as np
import zarr
from zarr.codecs import BloscCname, BloscCodec, BloscShuffle, ZstdCodec

from .claims import CLAIMS_DIR
from .errors import DataDirError, DiskFullError, StoreError
from .grid import PixelWindow, window_parts
from .location import DataLocation, S3Location, as_location, icechunk_storage, is_s3
from .products import Codec, Product, Variable

if TYPE_CHECKING:
    import filelock
    from zarr.core.array import AsyncArray

log = logging.getLogger(__name__)
# Local commits are serialised by our own file lock, so icechunk's warning about concurrent local commits is noise.
icechunk.set_logs_filter("warn,icechunk::storage::object_store=error")

CUBE_MARKER = "cube.json"
REPO_DIR = "store.icechunk"
MANIFEST_DIR = "manifest"
STAGING_DIR = "staging"
LOCK_FILE = "commit.lock"
BRANCH = "main"
CUBE_FORMAT = 1
LEGACY_FILL_CHUNK = 5000
"""The fill chunk of cubes made before the marker and the commits recorded theirs."""
MAX_CONFLICT_REDOS = 50
MANIFEST_SPLIT_CHUNKS = 25  # zarr chunks per axis in one icechunk manifest piece: one 2 m tile (benchmarks/README.md)
CUBE_PARTS = frozenset({CUBE_MARKER, REPO_DIR, MANIFEST_DIR, STAGING_DIR, LOCK_FILE, CLAIMS_DIR, "cube.tmp"})
"""What a cube folder may hold (a creator that died may have left some of them, without the marker)."""
DATA_DIR_PARTS = frozenset({"tile-index", "quicklooks", "regions.geojson", "regions.parquet"})
"""Entries darts-aux itself (or its prefetch deployment) keeps in a data directory beside the cubes."""
IGNORED_ENTRIES = frozenset({"lost+found", ".DS_Store"})
"""Entries a fresh filesystem or a desktop puts into any folder."""
PROBE_PREFIX = ".darts-aux-probe-"
# Patterns are compiled on first use (re caches them), not when a read imports this module.
_CUBE_FOLDER = r"^(arcticdem-\d+m|tcvis-\d{4}-\d{4}|alphaearth-\d+m)$"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_DISK_FULL_TEXT = r"no space left on device|file too large|disk quota exceeded|os error (28|27|122)\b"

Arrays = dict[str, np.ndarray]


def FileLock(path: Path) -> filelock.FileLock:  # noqa: N802 - stands in for the class, imported on first lock
    """filelock.FileLock(path); filelock is imported by the first writer, not by a read."""
    from filelock import FileLock as _FileLock

    return _FileLock(path)


def zarr_compressor(codec: Codec, dtype: str) -> BloscCodec | ZstdCodec:
    """The zarr v3 codec object for a Codec description."""
    if codec.name == "zstd":
        return ZstdCodec(level=codec.level)
    return BloscCodec(
        cname=BloscCname(codec.name.removeprefix("blosc-")),
        clevel=codec.level,
        shuffle=BloscShuffle[codec.shuffle],
        typesize=np.dtype(dtype).itemsize,
    )


@dataclass(frozen=True)
class CubePaths:
    """Where one cube's parts live under a data directory (a local folder or an S3 prefix)."""

    root: DataLocation

    @property
    def on_object_store(self) -> bool:
        """True when the cube lives on S3-compatible object storage (no file lock; conditional writes)."""
        return is_s3(self.root)

    @property
    def marker(self) -> DataLocation:
        return self.root / CUBE_MARKER

    @property
    def repo(self) -> DataLocation:
        return self.root / REPO_DIR

    @property
    def manifest(self) -> DataLocation:
        return self.root / MANIFEST_DIR

    @property
    def staging(self) -> DataLocation:
        return self.root / STAGING_DIR

    @property
    def lock(self) -> Path:
        """The commit lock file (local cubes only)."""
        if isinstance(self.root, S3Location):
            raise StoreError(f"{self.root} is on object storage: commits there need no lock file")
        return self.root / LOCK_FILE


def cube_paths(data_dir: DataLocation | str, product: Product) -> CubePaths:
    """The folder (or S3 prefix) of a product's cube inside a data directory."""
    return CubePaths(as_location(data_dir) / product.folder)


def cube_exists(data_dir: DataLocation | str, product: Product) -> bool:
    """True when the cube was created (its marker is written last)."""
    return cube_paths(data_dir, product).marker.exists()


@dataclass(frozen=True)
class WindowWrite:
    """One chunk's part of a commit: its window, and how new pixels merge into what is stored there (or None)."""

    window: PixelWindow
    merge: Callable[[Arrays | None], Arrays]


@dataclass(frozen=True)
class PreparedWrite:
    """Chunks merged and written into one uncommitted icechunk session (see Cube.prepare)."""

    session: icechunk.Session
    writes: tuple[WindowWrite, ...]


class Cube:
    """One product's cube: an icechunk repository holding a zarr group with one array per variable."""

    def __init__(self, paths: CubePaths, product: Product, repo: icechunk.Repository) -> None:
        self.paths = paths
        self.product = product
        self.repo = repo

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: DataLocation | str, product: Product, any_grid: bool = False) -> Cube:
        """Open an existing cube for reading (no lock, no write); `any_grid` also opens one of an older chunk grid."""
        paths = cube_paths(data_dir, product)
        _check_marker(paths, product, any_grid)
        try:
            repo = icechunk.Repository.open(icechunk_storage(paths.repo))
        except icechunk.IcechunkError as error:
            raise StoreError(f"cannot open the cube at {paths.repo}: {error}") from error
        return cls(paths, product, repo)

    @classmethod
    def open_or_create(cls, data_dir: DataLocation | str, product: Product) -> Cube:
        """Open the cube, creating it (metadata only) first if needed; safe when processes race.

        Before anything is created the data directory is checked: no foreign content, writable.
        On object storage racing creators are reconciled by icechunk's conditional writes instead of a lock.
        """
        paths = cube_paths(data_dir, product)
        if paths.marker.exists():
            return cls.open(data_dir, product)
        check_writable(data_dir, product)
        if paths.on_object_store:
            _create_or_fail(paths, product)
            return cls.open(data_dir, product)
        try:
            paths.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise disk_full_error(error, f"creating {paths.root}") or DataDirError(
                f"cannot create {paths.root}: {error}; pass a writable data_dir."
            ) from error
        with FileLock(paths.lock):
            if not paths.marker.exists():
                _create_or_fail(paths, product)
        return cls.open(data_dir, product)

    # -- reading -------------------------------------------------------------------------------

    def snapshot_id(self) -> str:
        """The id of the branch tip: what a read now would see."""
        return self.repo.lookup_branch(BRANCH)

    def arrays(self, snapshot_id: str | None = None) -> dict[str, zarr.Array]:
        """Read-only zarr arrays of every variable at one snapshot (the tip by default)."""
        session = (
            self.repo.readonly_session(snapshot_id=snapshot_id)
            if snapshot_id
            else self.repo.readonly_session(BRANCH)
        )
        group = zarr.open_group(session.store, mode="r")
        return {v.name: _variable_array(group, v.name, self.paths.root) for v in self.product.variables}

    def read(self, window: PixelWindow) -> Arrays:
        """Numpy arrays of every variable over a window, all from one snapshot."""
        from zarr.core.sync import sync

        session = self.repo.readonly_session(BRANCH)
        parts = [part for part, _ in window_parts(self.product.extent, window)]
        return sync(_read_parts(session.store, [v.name for v in self.product.variables], parts))

    # -- writing -------------------------------------------------------------------------------

    def prepare(self, writes: Sequence[WindowWrite], message: str) -> PreparedWrite:
        """Read chunks, merge new pixels into each and write them whole into one new session, not yet committed.

        Each `merge` gets the stored arrays, or None when nothing is stored under its window yet.
        Needs no lock: nothing is visible until `commit` commits the session, and a commit in the meantime
        that wrote any of the same zarr chunks makes that commit redo the reads and merges (never "ours wins").
        """
        from zarr.core.sync import sync

        session = self.repo.writable_session(BRANCH)
        names = [v.name for v in self.product.variables]
        arrays = sync(_open_arrays(session.store, names, self.paths.root))
        for write in writes:
            # one round trip each: are any of the window's zarr chunks stored (then read them), write them all
            stored = sync(_read_if_stored(session.store, arrays, write.window))
            merged = write.merge(stored)  # None: nothing stored under the window, nothing to merge with
            try:
                sync(_write_all(arrays, write.window, merged))
            except (OSError, icechunk.IcechunkError) as error:  # chunk objects are written here, before the commit
                raise disk_full_error(error, f"writing {message!r} to {self.paths.repo}") or StoreError(
                    f"writing {message!r} to {self.paths.repo} failed: {error}"
                ) from error
        return PreparedWrite(session, tuple(writes))

    def commit(self, writes: Sequence[WindowWrite], message: str, metadata: Mapping[str, Any],
               prepared: PreparedWrite | None = None) -> str:
        """Commit chunks merged with new pixels (`prepared` earlier, or read, merged and written now); the snapshot id.

        All the chunks land in one snapshot, or none does. Call it holding `commit_lock()`: icechunk's local
        storage is not safe for concurrent commits, and the lock also orders the manifest rows written after
        the commit. On object storage there is no lock: icechunk's conditional write of the branch ref detects a
        concurrent commit. Either way, a commit since the session began that touched other chunks is rebased
        over; one that wrote any of these chunks makes us re-read and re-merge (never "ours wins").
        """
        for attempt in range(MAX_CONFLICT_REDOS):
            ready = prepared if prepared is not None and attempt == 0 else self.prepare(writes, message)
            try:
                return ready.session.commit(message, metadata=dict(metadata), rebase_with=icechunk.ConflictDetector(),
                                            rebase_tries=MAX_CONFLICT_REDOS)
            except (icechunk.ConflictError, icechunk.RebaseFailedError):
                log.info("%s: a chunk changed during the merge; re-reading (redo %d)", message, attempt + 1)
                continue
            except (OSError, icechunk.IcechunkError) as error:
                raise disk_full_error(error, f"the commit of {message!r} to {self.paths.repo}") or StoreError(
                    f"commit of {message!r} to {self.paths.repo} failed: {error}"
                ) from error
        raise StoreError(f"commit of {message!r} kept conflicting after {MAX_CONFLICT_REDOS} redos")

    def commit_window(self, window: PixelWindow, merge: Callable[[Arrays | None], Arrays], message: str,
                      metadata: Mapping[str, Any]) -> str:
        """Read, merge, write and commit one chunk (see `commit`); the snapshot id."""
        return self.commit([WindowWrite(window, merge)], message, metadata)

    @contextmanager
    def commit_lock(self) -> Iterator[None]:
        """Hold the cube's inter-process commit lock (local cubes; on object storage a no-op, see commit)."""
        with nullcontext() if self.paths.on_object_store else FileLock(self.paths.lock):
            yield

    def history(self) -> Iterator[icechunk.SnapshotInfo]:
        """Snapshots of the branch, newest first (commit metadata names the chunks)."""
        return self.repo.ancestry(branch=BRANCH)


async def _open_arrays(store: Any, names: Sequence[str], root: DataLocation) -> dict[str, AsyncArray]:
    """The cube's arrays in a writable session, opened once for all the chunks a commit writes."""
    group = await zarr.api.asynchronous.open_group(store=store, mode="r+")
    arrays: dict[str, AsyncArray] = {}
    for name in names:
        node = await group.getitem(name)
        if not isinstance(node, zarr.AsyncArray):
            raise _not_an_array(root, name)
        arrays[name] = node
    return arrays


async def _read_parts(store: Any, names: Sequence[str], parts: Sequence[PixelWindow]) -> Arrays:
    """Every variable over the parts of a window (side by side), all decoded concurrently."""
    from .chunkread import read_windows

    group = await zarr.api.asynchronous.open_group(store=store, mode="r")
    arrays: list[Any] = await asyncio.gather(*(group.getitem(name) for name in names))
    pieces = await read_windows(dict(zip(names, arrays, strict=True)), parts)
    if len(parts) == 1:
        return dict(zip(names, pieces, strict=True))
    return {name: np.concatenate(pieces[i * len(parts):(i + 1) * len(parts)], axis=1) for i, name in enumerate(names)}


async def _read_if_stored(store: Any, arrays: Mapping[str, AsyncArray], window: PixelWindow) -> Arrays | None:
    """Every variable over the window, or None when none of its zarr chunks is stored (only fill values there)."""
    keys = []
    for name, array in arrays.items():
        rows, cols = array.chunks
        keys += [f"{name}/{array.metadata.encode_chunk_key((row, col))}"
                 for row in range(window.row0 // rows, (window.row1 - 1) // rows + 1)
                 for col in range(window.col0 // cols, (window.col1 - 1) // cols + 1)]
    if not any(await asyncio.gather(*(store.exists(key) for key in keys))):
        return None
    read = await asyncio.gather(*(array.getitem(window.slices) for array in arrays.values()))
    return {name: np.asarray(data) for name, data in zip(arrays, read, strict=True)}


async def _write_all(arrays: Mapping[str, AsyncArray], window: PixelWindow, merged: Arrays) -> None:
    """Write every variable of a merged chunk into the session at once (uncommitted until session.commit).

    zarr leaves out zarr chunks that hold only the fill value, testing each with a full comparison that copies the
    chunk's valid values (a tenth of a commit's CPU). When no zarr chunk of a variable is all fill, which
    `has_fill_only_chunk` finds out from a row or two of most chunks, zarr is told to skip that test.
    """
    writes = []
    for name, array in arrays.items():
        values = merged[name]
        if not has_fill_only_chunk(values, window, array.chunks, array.metadata.fill_value):
            array = array.with_config({"write_empty_chunks": True})  # nothing to leave out: skip zarr's test
        writes.append(array.setitem(window.slices, values))
    await asyncio.gather(*writes)


def has_fill_only_chunk(values: np.ndarray, window: PixelWindow, chunks: tuple[int, ...], fill: Any) -> bool:
    """Whether the window's values hold only the fill value (NaN counts as NaN) over any zarr chunk's part of it."""
    from .mosaic import valid_mask

    fill_value = float(fill) if np.issubdtype(values.dtype, np.floating) else fill
    for rows in _chunk_spans(window.row0, window.row1, chunks[0]):
        for cols in _chunk_spans(window.col0, window.col1, chunks[1]):
            block = values[rows, cols]
            if valid_mask(block[0], fill_value).any():  # data in its first row: not fill only (the common case)
                continue
            if not valid_mask(block, fill_value).any():
                return True
    return False


def _chunk_spans(start: int, stop: int, step: int) -> Iterator[slice]:
    """The window's axis cut at zarr chunk boundaries, as slices relative to the window's start."""
    edges = [start, *range((start // step + 1) * step, stop, step), stop]
    return (slice(a - start, b - start) for a, b in itertools.pairwise(edges))


def is_disk_full(error: BaseException) -> bool:
    """True when an error (or one it wraps) is ENOSPC, EFBIG or EDQUOT, also inside icechunk's error text."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if re.search(_DISK_FULL_TEXT, str(current), re.IGNORECASE):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_error(error: BaseException, what: str) -> DiskFullError | None:
    """A DiskFullError saying what to do when `error` is a full disk (or a file-size limit), else None."""
    if isinstance(error, DiskFullError):
        return error
    if not is_disk_full(error):
        return None
    detail = _disk_full_line(error)
    return DiskFullError(
        f"{what} failed: the disk is full (or a file-size limit was hit: {detail}). Nothing was committed and "
        f"the cube still holds its last snapshot; free space or choose another data_dir, then run the same "
        f"load again."
    )


def _disk_full_line(error: BaseException) -> str:
    """The line of an error's text that names the full disk (icechunk adds many lines of context)."""
    lines = [line.strip(" x|`->") for line in str(error).splitlines()]
    named = [line for line in lines if re.search(_DISK_FULL_TEXT, line, re.IGNORECASE)]
    return (named or lines or [type(error).__name__])[0][:200]


def check_cube_folder(data_dir: DataLocation | str, product: Product) -> None:
    """Refuse a data directory or cube folder that holds something other than darts-aux's cubes (reads only)."""
    paths = cube_paths(data_dir, product)
    if paths.marker.exists():
        _check_marker(paths, product)
        return
    # The product's own folder may be half made (no marker yet) while its first fill runs: its content is checked next.
    foreign = [name for name in foreign_entries(as_location(data_dir)) if name != product.base_key]
    if foreign:
        raise DataDirError(
            f"data_dir {data_dir} is not empty and holds no darts-aux cube ({_listing(foreign)}); nothing was "
            f"written. Pass an empty or new folder, or a darts-aux data directory."
        )
    if paths.root.is_dir():
        strangers = sorted(p.name for p in paths.root.iterdir() if p.name not in CUBE_PARTS and not _ignored(p.name))
        if strangers:
            raise DataDirError(
                f"{paths.root} is not a darts-aux cube (no {CUBE_MARKER}; it holds {_listing(strangers)}); nothing "
                f"was written. Move that folder away or pass another data_dir."
            )
    elif paths.root.is_file() if isinstance(paths.root, S3Location) else paths.root.exists():
        raise DataDirError(f"{paths.root} is a file, where the {product.key} cube belongs; move it away or pass "
                           f"another data_dir.")


def foreign_entries(data_dir: DataLocation) -> list[str]:
    """Names in a data directory that are not darts-aux's; empty when it is new, empty or holds a cube."""
    if not data_dir.is_dir():
        return []
    names = sorted(p.name for p in data_dir.iterdir() if not _ignored(p.name))
    if any((data_dir / name / CUBE_MARKER).is_file() or _holds_step_cube(data_dir / name) for name in names):
        return []
    return [n for n in names if n not in DATA_DIR_PARTS and not re.match(_CUBE_FOLDER, n)]


def _holds_step_cube(folder: DataLocation) -> bool:
    """True when a folder holds the cube of a time step (`<key>/<label>/` with its marker)."""
    return folder.is_dir() and any((child / CUBE_MARKER).is_file() for child in folder.iterdir())


def check_writable(data_dir: DataLocation | str, product: Product) -> None:
    """Fail before any download when the cube cannot be written: content, os.access, then a real write probe.

    The probe is a temporary file created and removed in the deepest folder that exists on the cube's path,
    so a read-only mount is found even for root (for whom os.access ignores permission bits).
    """
    check_cube_folder(data_dir, product)
    root = cube_paths(data_dir, product).root
    if isinstance(root, S3Location):
        _write_probe(root, data_dir)
        return
    folder = _deepest_existing(root)
    if not folder.is_dir():
        raise DataDirError(f"{folder} is not a directory, so data_dir {data_dir} cannot be created there; pass "
                           f"a writable data_dir.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataDirError(f"{folder} is not writable, so the cube cannot be written to data_dir {data_dir}; pass "
                           f"a writable data_dir (or fix the folder's permissions).")
    _write_probe(folder, data_dir)


def _ignored(name: str) -> bool:
    """Entries that say nothing about who owns a folder: lost+found, .DS_Store, a concurrent write probe."""
    return name in IGNORED_ENTRIES or name.startswith(PROBE_PREFIX)


def _deepest_existing(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _write_probe(folder: DataLocation, data_dir: DataLocation | str) -> None:
    """Create and remove a small file in `folder`: the only test of writability that cannot lie."""
    probe = folder / f"{PROBE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if isinstance(probe, S3Location):
            probe.write_bytes(b"darts-aux")
        else:
            with open(probe, "xb") as handle:
                handle.write(b"darts-aux")
    except OSError as error:
        probe.unlink(missing_ok=True)
        raise disk_full_error(error, f"a test write to {folder}") or DataDirError(
            f"cannot write to {folder} ({error.strerror or error}), so the cube cannot be written to data_dir "
            f"{data_dir}; pass a writable data_dir."
        ) from None
    probe.unlink(missing_ok=True)


def _listing(names: list[str]) -> str:
    """'a', 'b', 'c' and 4 more."""
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _variable_array(group: zarr.Group, name: str, root: DataLocation) -> zarr.Array:
    """A variable's array in the cube's group (a group in its place means the cube is not darts-aux's)."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise _not_an_array(root, name)
    return node


def _not_an_array(root: DataLocation, name: str) -> DataDirError:
    """The error for a cube folder whose variable is a zarr group, not an array."""
    return DataDirError(f"{root} holds a group {name!r} where a cube keeps an array; move that folder away or pass "
                        f"another data_dir.")


def marker_fill_chunk(paths: CubePaths) -> int | None:
    """The fill chunk the cube's manifest is laid out in (None: no cube); cubes made before it was recorded: 5000."""
    if not paths.marker.exists():
        return None
    return int(json.loads(paths.marker.read_text()).get("fill_chunk", LEGACY_FILL_CHUNK))


def record_fill_chunk(paths: CubePaths, product: Product) -> None:
    """Record in the marker that the cube's manifest is now laid out in the product's fill chunks."""
    marker = json.loads(paths.marker.read_text())
    _write_marker(paths, {**marker, "fill_chunk": product.fill_chunk})


def _check_marker(paths: CubePaths, product: Product, any_grid: bool = False) -> None:
    """Fail clearly when the folder holds no cube, a cube of another product or format, or of another chunk grid."""
    if not paths.marker.exists():
        raise StoreError(f"no cube at {paths.root}; it is created by the first load or fill.")
    try:
        marker = json.loads(paths.marker.read_text())
    except (OSError, ValueError) as error:
        raise DataDirError(
            f"{paths.marker} is unreadable ({error}); {paths.root} does not hold a darts-aux cube. Move that folder "
            f"away or pass another data_dir."
        ) from error
    if not isinstance(marker, dict):
        raise DataDirError(f"{paths.marker} is not a darts-aux cube marker; move {paths.root} away or pass another "
                           f"data_dir.")
    if marker.get("product") != product.key or marker.get("format") != CUBE_FORMAT:
        raise DataDirError(
            f"{paths.root} holds {marker.get('product')!r} format {marker.get('format')!r}, not "
            f"{product.key!r} format {CUBE_FORMAT}; use another data_dir."
        )
    recorded = int(marker.get("fill_chunk", LEGACY_FILL_CHUNK))
    if recorded != product.fill_chunk and not any_grid:
        data_dir = str(paths.root)[: -len(paths.root.name) - 1]
        raise DataDirError(
            f"{paths.root} records its chunks as {recorded}² px, this version of darts-aux as {product.fill_chunk}² "
            f"px; run `darts-aux manifest rebuild --data-dir {data_dir}` once to carry it over (the pixels stay)."
        )


def repository_config() -> icechunk.RepositoryConfig:
    """Split icechunk's chunk manifests by region, so a commit rewrites only the piece around its chunk."""
    splitting = icechunk.ManifestSplittingConfig.from_dict(
        {icechunk.ManifestSplitCondition.AnyArray(): {icechunk.ManifestSplitDimCondition.Any(): MANIFEST_SPLIT_CHUNKS}}
    )
    return icechunk.RepositoryConfig(manifest=icechunk.ManifestConfig(splitting=splitting))


def _create_or_fail(paths: CubePaths, product: Product) -> None:
    """Create the cube; a full disk or an unwritable folder becomes a typed error (the marker is not written)."""
    try:
        _create(paths, product)
    except (OSError, icechunk.IcechunkError) as error:
        full = disk_full_error(error, f"creating the {product.key} cube at {paths.root}")
        if full is not None:
            raise full from error
        raise StoreError(f"cannot create the {product.key} cube at {paths.root}: {error}; check that data_dir is "
                         f"writable, or pass another data_dir.") from error


def _create(paths: CubePaths, product: Product) -> None:
    """Create the repository and its empty arrays, then write the marker (last, so it means 'complete')."""
    started = time.perf_counter()
    repo = _create_repository(paths)
    for _ in range(MAX_CONFLICT_REDOS):
        session = repo.writable_session(BRANCH)
        root = zarr.open_group(session.store, mode="a", attributes=_group_attributes(product))
        for variable in product.variables:
            if variable.name not in root:
                _create_array(root, product, variable)
        if not session.has_uncommitted_changes:
            break
        try:
            session.commit(f"create {product.key} cube", metadata={"kind": "create", "product": product.key})
            break
        except icechunk.ConflictError:  # another creator on object storage committed first: look again
            continue
    marker = {"product": product.key, "format": CUBE_FORMAT, "crs": product.extent.crs,
              "shape": list(product.extent.shape), "fill_chunk": product.fill_chunk}
    _write_marker(paths, marker)
    log.info("created %s cube at %s in %.2f s", product.key, paths.root, time.perf_counter() - started)


def _write_marker(paths: CubePaths, marker: dict[str, Any]) -> None:
    """Write the marker whole or not at all (one PUT on object storage, a rename on disk)."""
    if isinstance(paths.marker, S3Location):
        paths.marker.write_text(json.dumps(marker, indent=2))
    else:
        tmp = paths.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(marker, indent=2))
        tmp.replace(paths.marker)


def _create_repository(paths: CubePaths) -> icechunk.Repository:
    """A new repository, or the one a concurrent (or dead) creator made first."""
    storage = icechunk_storage(paths.repo)
    if isinstance(paths.repo, Path) and paths.repo.exists() and any(paths.repo.iterdir()):
        return icechunk.Repository.open(storage)  # a creator died after creating the repo: finish its work
    try:
        repo = icechunk.Repository.create(storage, config=repository_config())
    except icechunk.IcechunkError:
        if not isinstance(paths.repo, S3Location):
            raise
        return _open_created_by_another(storage)  # on object storage a racing creator won: use its repository
    repo.save_config()
    return repo


def _open_created_by_another(storage: icechunk.Storage, wait_seconds: float = 30.0) -> icechunk.Repository:
    """Open a repository a concurrent creator is writing (its config lands before its first branch ref)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return icechunk.Repository.open(storage)
        except icechunk.IcechunkError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _group_attributes(product: Product) -> dict[str, Any]:
    """Self-description of the grid, readable without darts-aux."""
    e = product.extent
    return {
        "product": product.key,
        "crs": e.crs,
        "geotransform": list(e.affine.to_gdal()),
        "fill_chunk": product.fill_chunk,
        "source_collection": product.collection,
    }


def _create_array(root: zarr.Group, product: Product, variable: Variable) -> zarr.Array:
    """An empty array of the whole extent in read-chunk-sized zarr chunks (a fill chunk is a block of them)."""
    return root.create_array(
        name=variable.name,
        shape=product.extent.shape,
        dtype=variable.dtype,
        chunks=(product.read_chunk, product.read_chunk),
        fill_value=variable.fill_value,
        compressors=[zarr_compressor(variable.codec, variable.dtype)],
        dimension_names=("y", "x"),
        attributes={"source_asset": variable.source_asset, "grid_mapping": "spatial_ref",
                    **_quantisation_attributes(variable)},
    )


def _quantisation_attributes(variable: Variable) -> dict[str, Any]:
    """How to read stored codes as values, for anyone opening the zarr array without darts-aux."""
    q = variable.quantisation
    if q is None:
        return {}
    return {"quantisation": {"value": f"sign(q) * (abs(q) / {q.divisor}) ** {q.power}", "divisor": q.divisor,
                             "power": q.power, "nodata": q.nodata}}


class WindowReader:
    """Array-like view of one window of a zarr array, for dask.array.from_array."""

    def __init__(self, array: zarr.Array, window: PixelWindow) -> None:
        self.array = array
        self.window = window
        self.shape = window.shape
        self.dtype = array.dtype
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        w = self.window
        return np.asarray(self.array[w.row0 + r0 : w.row0 + r1, w.col0 + c0 : w.col0 + c1])
