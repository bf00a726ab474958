"""Downloaded chunks parked on disk between the download and commit tasks (tasks pass paths, not arrays)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

STALE_SECONDS = 24 * 3600


def stage(directory: Path, name: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays to a new uncompressed .npz (atomically) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{uuid.uuid4().hex[:12]}.npz"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)
    return path


def load(path: Path) -> dict[str, np.ndarray]:
    """Read a staged chunk back."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def discard(path: Path) -> None:
    """Remove a staged chunk once committed."""
    path.unlink(missing_ok=True)


def sweep(directory: Path, older_than: float = STALE_SECONDS) -> int:
    """Delete staged files left by killed runs; returns how many."""
    if not directory.exists():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in directory.iterdir():
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
