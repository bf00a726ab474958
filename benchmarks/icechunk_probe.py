"""icechunk's chunk reads on their own: the warm read's store cost, measurable under any icechunk version.

Needs only icechunk, zarr and numpy (no darts_aux), so the same file runs in another environment, e.g. one with
icechunk 2.x on Python ≥ 3.12. It prints two things:

1. `fetch`: 72 chunk objects of 1.15 MB (83 MB, the warm read's chunk bytes) written as native chunks of a
   repository on local disk, then fetched through its zarr store all at once and kept (as one `gather` does),
   against the same bytes read from plain files, all kept (72 fresh buffers: page faults) and one by one (the
   freed buffer's memory reused). Median of 15 runs, wall and CPU.
2. `virtual references`: whether a virtual chunk container rebases its URL prefix onto its store's root. It
   does not in icechunk 1.x: a reference keeps the absolute path it was written with, so a cube holding its
   chunks as virtual references could not be mounted under another path (benchmarks/README.md, "Warm read").

Run: `uv run python benchmarks/icechunk_probe.py [--objects 72] [--bytes 1154000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import icechunk
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


def timed(action: Callable[[], object], runs: int = 15) -> tuple[float, float]:
    """Median wall and CPU seconds of `action` over `runs` runs, after three warm-up runs."""
    for _ in range(3):
        action()
    walls, cpus = [], []
    for _ in range(runs):
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        action()
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def fetch(root: Path, objects: int, nbytes: int) -> None:
    """Print the fetch of `objects` native chunks through icechunk against plain files of the same bytes."""
    rng = np.random.default_rng(0)
    payloads = [rng.integers(0, 255, nbytes, dtype=np.uint8).tobytes() for _ in range(objects)]
    paths = []
    for index, payload in enumerate(payloads):
        path = root / f"{index}.bin"
        path.write_bytes(payload)
        paths.append(path)
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(root / "repo")))
    session = repo.writable_session("main")
    zarr.group(session.store).create_array("a", shape=(objects, nbytes), chunks=(1, nbytes), dtype="u1",
                                           compressors=None)
    prototype = default_buffer_prototype()
    keys = [f"a/c/{index}/0" for index in range(objects)]

    async def put() -> None:
        await asyncio.gather(*(session.store.set(key, prototype.buffer.from_bytes(payload))
                               for key, payload in zip(keys, payloads, strict=True)))

    sync(put())
    session.commit("chunk objects")
    store = repo.readonly_session("main").store

    async def get_all() -> list:
        return await asyncio.gather(*(store.get(key, prototype) for key in keys))

    got = sync(get_all())
    assert [buffer.to_bytes() for buffer in got] == payloads, "icechunk returned other bytes than were written"
    through_icechunk = timed(lambda: sync(get_all()))
    from_files = timed(lambda: [path.read_bytes() for path in paths])
    one_by_one = timed(lambda: [len(path.read_bytes()) for path in paths])
    total = objects * nbytes / 1e6
    print(f"icechunk {icechunk.__version__}, zarr {zarr.__version__}: {objects} objects, {total:.0f} MB")
    for label, (wall, cpu) in (("through icechunk, all kept", through_icechunk),
                               ("plain files, all kept", from_files), ("plain files, one by one", one_by_one)):
        print(f"  {label:27s} {wall * 1e3:7.1f} ms wall {cpu * 1e3:7.1f} ms CPU")


def virtual_references(root: Path) -> None:
    """Print whether a virtual reference under a container's prefix is read from the container store's root."""
    chunk_dir = root / "chunk-files"
    chunk_dir.mkdir()
    (chunk_dir / "a.bin").write_bytes(bytes(range(16)))
    prefix = "file:///cube-root/"
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(
        icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(str(chunk_dir))))
    storage = icechunk.local_filesystem_storage(str(root / "virtual-repo"))
    repo = icechunk.Repository.create(storage, config=config, authorize_virtual_chunk_access={prefix: None})
    session = repo.writable_session("main")
    zarr.group(session.store).create_array("x", shape=(16,), chunks=(16,), dtype="u1", compressors=None)
    session.store.set_virtual_ref("x/c/0", f"{prefix}a.bin", offset=0, length=16)
    session.commit("virtual reference")
    try:
        values = zarr.open_group(repo.readonly_session("main").store, mode="r")["x"][:]
        print(f"virtual references: {prefix}a.bin read from {chunk_dir}: the prefix is rebased ({values[:4]} ...)")
    except Exception as error:  # noqa: BLE001 - icechunk raises its own error type for a reference it cannot fetch
        text = " ".join(str(error).split())
        reason = text[text.find("Object at location"):] if "Object at location" in text else text
        print(f"virtual references: {prefix}a.bin is not read from {chunk_dir}, the prefix is not rebased: "
              f"{reason[:160]}")


def main() -> None:
    """Run both probes in a scratch directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=72)
    parser.add_argument("--bytes", type=int, default=1_154_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="icechunk-probe-"))
    try:
        fetch(root, args.objects, args.bytes)
        virtual_references(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
