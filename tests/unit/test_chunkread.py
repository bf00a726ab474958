"""darts_aux.chunkread: windows read by decoding blosc chunks into the result equal zarr's own reads."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import icechunk
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from darts_aux import chunkread
from darts_aux.errors import StoreError
from darts_aux.grid import PixelWindow

SHAPE = (41, 33)
CHUNKS = (8, 5)
WRITTEN = PixelWindow(0, 24, 0, 20)
"""Only the chunks under this window are stored; the others hold nothing (fill values)."""


@pytest.fixture(scope="module")
def store() -> Iterator[icechunk.IcechunkStore]:
    """A repository with float32 and uint8 blosc arrays, a zstd array, each partly written."""
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    session = repo.writable_session("main")
    group = zarr.group(store=session.store)
    rng = np.random.default_rng(7)
    layouts = {
        "dem": ("float32", float("nan"), BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle, typesize=4)),
        "mask": ("uint8", 0, BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.noshuffle, typesize=1)),
        "zstd": ("float32", -1.0, ZstdCodec(level=3)),
    }
    for name, (dtype, fill, codec) in layouts.items():
        array = group.create_array(name, shape=SHAPE, chunks=CHUNKS, dtype=dtype, fill_value=fill, compressors=[codec])
        values = rng.integers(0, 250, WRITTEN.shape).astype(dtype)
        if dtype == "float32":
            values = values + np.float32(0.25)
            values[3, 4] = np.nan  # a NaN pixel inside stored data stays NaN
        array[WRITTEN.slices] = values
    session.commit("arrays")
    yield repo.readonly_session("main").store


def arrays(store: icechunk.IcechunkStore, *names: str) -> dict[str, object]:
    """The named async arrays of the store."""

    async def open_all() -> dict[str, object]:
        group = await zarr.api.asynchronous.open_group(store=store, mode="r")
        return {name: await group.getitem(name) for name in names}

    return sync(open_all())


def zarr_read(store: icechunk.IcechunkStore, name: str, window: PixelWindow) -> np.ndarray:
    """The oracle: zarr's own decode of the window."""
    return zarr.open_group(store, mode="r")[name][window.slices]


WINDOWS = [
    PixelWindow(0, 8, 0, 5),  # exactly one chunk
    PixelWindow(2, 7, 1, 4),  # inside one chunk
    PixelWindow(3, 30, 2, 31),  # across stored and never-written chunks
    PixelWindow(20, 41, 15, 33),  # to the array's last (short) chunks
    PixelWindow(0, 41, 0, 33),  # all of it
    PixelWindow(30, 41, 25, 33),  # only never-written chunks
]


@pytest.mark.parametrize("window", WINDOWS, ids=str)
@pytest.mark.parametrize("name", ["dem", "mask"])
def test_window_equals_zarr_read(store: icechunk.IcechunkStore, name: str, window: PixelWindow) -> None:
    opened = arrays(store, name)
    assert chunkread.is_blosc_array(opened[name])
    got = sync(chunkread.read_windows(opened, [window]))[0]
    expected = zarr_read(store, name, window)
    assert got.dtype == expected.dtype and got.shape == window.shape
    np.testing.assert_array_equal(got, expected)


def test_never_written_chunks_hold_the_fill_value(store: icechunk.IcechunkStore) -> None:
    window = PixelWindow(30, 41, 25, 33)
    dem, mask = sync(chunkread.read_windows(arrays(store, "dem", "mask"), [window]))
    assert np.isnan(dem).all() and (mask == 0).all()


def test_stored_pixels_are_the_written_values(store: icechunk.IcechunkStore) -> None:
    (dem,) = sync(chunkread.read_windows(arrays(store, "dem"), [WRITTEN]))
    assert np.isnan(dem[3, 4]) and np.isnan(dem).sum() == 1
    assert ((dem[~np.isnan(dem)] - 0.25) % 1 == 0).all()


def test_several_parts_and_arrays_come_back_array_major(store: icechunk.IcechunkStore) -> None:
    parts = [PixelWindow(0, 10, 28, 33), PixelWindow(0, 10, 0, 6)]
    got = sync(chunkread.read_windows(arrays(store, "dem", "mask"), parts))
    expected = [zarr_read(store, name, part) for name in ("dem", "mask") for part in parts]
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_other_codecs_are_read_by_zarr(store: icechunk.IcechunkStore) -> None:
    opened = arrays(store, "zstd")
    assert not chunkread.is_blosc_array(opened["zstd"])
    window = PixelWindow(3, 30, 2, 31)
    np.testing.assert_array_equal(sync(chunkread.read_windows(opened, [window]))[0], zarr_read(store, "zstd", window))


def test_chunk_parts_cover_the_window_once() -> None:
    opened = arrays_of_shape((100, 100), (10, 10))
    window = PixelWindow(5, 37, 12, 40)
    parts = chunkread.chunk_parts(opened, window)
    assert [p.key for p in parts][:4] == ["c/0/1", "c/0/2", "c/0/3", "c/1/1"] and len(parts) == 4 * 3
    covered = np.zeros(window.shape, int)
    for part in parts:
        covered[part.in_output] += 1
        rows, cols = part.in_chunk
        assert rows.stop - rows.start == part.in_output[0].stop - part.in_output[0].start
        assert cols.stop - cols.start == part.in_output[1].stop - part.in_output[1].start
    assert (covered == 1).all()


def arrays_of_shape(shape: tuple[int, int], chunks: tuple[int, int]) -> object:
    """An empty blosc async array of a shape, for the pure geometry."""
    group = zarr.group(store=zarr.storage.MemoryStore())
    group.create_array("a", shape=shape, chunks=chunks, dtype="uint8", compressors=[BloscCodec(cname="lz4")])
    return group["a"]._async_array


def damaged_store(frame: bytes) -> icechunk.IcechunkStore:
    """A one-chunk blosc array whose stored chunk is replaced by `frame`."""
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    session = repo.writable_session("main")
    group = zarr.group(store=session.store)
    array = group.create_array("dem", shape=(8, 5), chunks=(8, 5), dtype="float32", fill_value=float("nan"),
                               compressors=[BloscCodec(cname="lz4", shuffle=BloscShuffle.shuffle, typesize=4)])
    array[:] = np.ones((8, 5), "float32")
    buffer = default_buffer_prototype().buffer.from_bytes(frame)
    sync(session.store.set("dem/c/0/0", buffer))
    session.commit("damaged")
    return repo.readonly_session("main").store


@pytest.mark.parametrize("frame", [b"xx", b"\x02\x01\x11\x04" + (999).to_bytes(4, "little") + bytes(24)],
                         ids=["truncated", "wrong size"])
def test_a_damaged_chunk_is_a_store_error(frame: bytes) -> None:
    broken = damaged_store(frame)
    with pytest.raises(StoreError, match="dem/c/0/0.*damaged"):
        sync(chunkread.read_windows(arrays(broken, "dem"), [PixelWindow(0, 8, 0, 5)]))


FORK_CHILD = r"""
import os, sys
from darts_aux import chunkread
assert chunkread.decode_pool().submit(lambda: 1).result(timeout=10) == 1  # the parent's threads exist
pid = os.fork()
if pid == 0:
    os._exit(0 if chunkread.decode_pool().submit(lambda: 41 + 1).result(timeout=10) == 42 else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_decodes_on_threads_of_its_own() -> None:
    """Without the at-fork reset the child's pool would hand work to threads that only exist in the parent."""
    done = subprocess.run([sys.executable, "-c", FORK_CHILD], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
