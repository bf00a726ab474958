"""Downloaded chunks parked on disk between the download and commit tasks (tasks pass paths, not arrays).

A staged file is named after the chunk, the host and the process that wrote it, so the sweep at the
start of a fill can remove what killed runs left behind: files of dead processes on this host after an
hour (a commit task elsewhere may still want a file whose writer has exited), anything after a day.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import numpy as np

STALE_SECONDS = 24 * 3600
ORPHAN_SECONDS = 3600


def stage(directory: Path, name: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays to a new uncompressed .npz (atomically) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:12]}.npz"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep half a chunk
        raise
    return path


def load(path: Path) -> dict[str, np.ndarray]:
    """Read a staged chunk back."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def discard(path: Path) -> None:
    """Remove a staged chunk once committed."""
    path.unlink(missing_ok=True)


def sweep(directory: Path, older_than: float = STALE_SECONDS, orphaned_after: float = ORPHAN_SECONDS) -> int:
    """Delete staged files left by killed runs; returns how many."""
    if not directory.exists():
        return 0
    now = time.time()
    removed = 0
    for path in directory.iterdir():
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > older_than or (age > orphaned_after and _writer_is_gone(path)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _writer_is_gone(path: Path) -> bool:
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
