"""Downloaded chunks parked between the download and commit tasks (tasks pass paths, not arrays).

For a local data directory they are files in `<cube>/staging/`; for one on object storage they are
objects under the same prefix there, so a commit task on another machine finds them (Dask workers share
no disk).

A staged file is named after the chunk, the host and the process that wrote it, so the sweep at the
start of a fill can remove what killed runs left behind: files of dead processes on this host after an
hour (a commit task elsewhere may still want a file whose writer has exited), anything after a day.
"""

from __future__ import annotations

import io
import os
import socket
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from .errors import StoreError
from .location import DataLocation, S3Location, as_location
from .npy_header import NPY_HEADER_LOCK

STALE_SECONDS = 24 * 3600
ORPHAN_SECONDS = 3600


def stage(directory: DataLocation, name: str, arrays: dict[str, np.ndarray]) -> DataLocation:
    """Write arrays to a new uncompressed .npz (atomically) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:12]}.npz"
    if isinstance(path, S3Location):
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        path.write_bytes(buffer.getvalue())  # one PUT: all of it or nothing
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep half a chunk
        raise
    return path


def locate(directory: DataLocation, staged: str | Path) -> DataLocation:
    """The staged chunk named by a download task's result (a path or URL string) inside a staging folder."""
    return as_location(directory) / str(staged).rsplit("/", 1)[-1]


def load(path: DataLocation) -> dict[str, np.ndarray]:
    """Read a staged chunk back; StoreError when the file is gone or damaged (its chunk is simply downloaded again)."""
    try:
        source = io.BytesIO(path.read_bytes()) if isinstance(path, S3Location) else path
        with NPY_HEADER_LOCK, np.load(source) as data:  # each array's header is parsed as it is read
            return {key: data[key] for key in data.files}
    except (FileNotFoundError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise StoreError(f"the staged chunk {path} cannot be read ({error}); "
                         "its chunk was not committed and the next fill downloads it again") from error


def discard(path: DataLocation) -> None:
    """Remove a staged chunk once committed."""
    path.unlink(missing_ok=True)


def sweep(directory: DataLocation, older_than: float = STALE_SECONDS,
          orphaned_after: float = ORPHAN_SECONDS) -> int:
    """Delete staged files left by killed runs; returns how many."""
    entries: list[tuple[DataLocation, float]]
    if isinstance(directory, S3Location):
        entries = [(path, stat.st_mtime) for path, stat in directory.rglob_stats()]
    elif not directory.exists():
        return 0
    else:
        entries = list(_local_stats(directory))
    now = time.time()
    removed = 0
    for path, mtime in entries:
        age = now - mtime
        if age > older_than or (age > orphaned_after and _writer_is_gone(path)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _local_stats(directory: Path) -> list[tuple[Path, float]]:
    """Files of a staging folder with their modification times."""
    entries = []
    for path in directory.iterdir():
        try:
            entries.append((path, path.stat().st_mtime))
        except FileNotFoundError:
            continue
    return entries


def _writer_is_gone(path: DataLocation) -> bool:
    """True when the file names this host and a process id that no longer exists."""
    parts = path.name.lstrip(".").split(".")
    if len(parts) < 4 or parts[1] != _host() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _host() -> str:
    """This machine's name, safe in a file name."""
    return socket.gethostname().replace(".", "-") or "localhost"
