"""Window reads that decode blosc chunks straight into the result: fetch, decode into a reused buffer, copy the part.

zarr-python decodes every chunk into a new array and then copies the window's part out of it; for the cube's
layout (BytesCodec + BloscCodec, regular chunks) the fresh buffers cost as much as the decoding itself
(benchmarks/README.md, "Warm read"). This reader fetches the chunk objects through the same zarr store API,
decodes each with blosc into a per-thread scratch buffer and copies only the window's part into the output,
on a small thread pool (blosc and numpy release the GIL). Arrays with any other codec chain go through zarr.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import StoreError

if TYPE_CHECKING:
    from zarr.core.array import AsyncArray

    from .grid import PixelWindow

IN_FLIGHT = 16
"""Chunks fetched but not yet decoded, at most: bounds the compressed bytes held by one read."""
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_scratch = threading.local()


@dataclass(frozen=True)
class ChunkPart:
    """One zarr chunk under a window: its store key, its part to copy, and where that part goes in the output."""

    key: str
    in_chunk: tuple[slice, slice]
    in_output: tuple[slice, slice]


def decode_pool() -> ThreadPoolExecutor:
    """The process-wide decode threads (one per core, at most 4), made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="darts-aux-decode")
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: give it a pool of its own on first use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def is_blosc_array(array: AsyncArray) -> bool:
    """True when the array's chunks are plain blosc frames of native-order values on a regular 2-D grid."""
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.core.chunk_grids import RegularChunkGrid

    metadata = array.metadata
    codecs: tuple[object, ...] = getattr(metadata, "codecs", ())  # zarr v2 metadata has none
    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec):
        return False
    endian = codecs[0].endian
    native = array.dtype.itemsize == 1 or endian is None or endian.value == sys.byteorder
    return native and isinstance(metadata.chunk_grid, RegularChunkGrid) and len(array.shape) == 2


def chunk_parts(array: AsyncArray, window: PixelWindow) -> list[ChunkPart]:
    """The zarr chunks a window touches, each with the part of it that the window needs."""
    rows, cols = array.metadata.chunk_grid.chunk_shape
    parts = []
    for row in range(window.row0 // rows, (window.row1 - 1) // rows + 1):
        r0, r1 = max(window.row0, row * rows), min(window.row1, (row + 1) * rows)
        for col in range(window.col0 // cols, (window.col1 - 1) // cols + 1):
            c0, c1 = max(window.col0, col * cols), min(window.col1, (col + 1) * cols)
            parts.append(ChunkPart(
                key=array.metadata.encode_chunk_key((row, col)),
                in_chunk=(slice(r0 - row * rows, r1 - row * rows), slice(c0 - col * cols, c1 - col * cols)),
                in_output=(slice(r0 - window.row0, r1 - window.row0), slice(c0 - window.col0, c1 - window.col0)),
            ))
    return parts


BLOSC_HEADER_BYTES = 16


def blosc_frame_nbytes(frame: np.ndarray) -> int:
    """Uncompressed size a blosc frame declares (bytes 4-7 of its 16-byte header, little-endian); -1 if too short."""
    if frame.nbytes < BLOSC_HEADER_BYTES:
        return -1
    return int.from_bytes(frame[4:8].tobytes(), "little")


def decode_into(frame: np.ndarray, chunk_shape: tuple[int, int], out: np.ndarray, part: ChunkPart, name: str) -> None:
    """Decode one blosc frame into this thread's scratch buffer and copy the window's part into `out`."""
    from numcodecs import blosc

    nbytes = chunk_shape[0] * chunk_shape[1] * out.dtype.itemsize
    stored_nbytes = blosc_frame_nbytes(frame)
    if stored_nbytes != nbytes:
        raise StoreError(f"chunk {name}/{part.key} of the cube holds {stored_nbytes} bytes, not the {nbytes} of a "
                         f"{chunk_shape[0]} x {chunk_shape[1]} {out.dtype} chunk: the cube is damaged")
    scratch = getattr(_scratch, "buffer", None)
    if scratch is None or scratch.nbytes < nbytes:
        scratch = _scratch.buffer = np.empty(nbytes, np.uint8)
    target = scratch[:nbytes]
    try:
        blosc.decompress(frame, target)
    except Exception as error:  # numcodecs raises RuntimeError/ValueError for a damaged or mis-sized frame
        raise StoreError(f"chunk {name}/{part.key} of the cube cannot be decoded: {error}") from error
    out[part.in_output] = target.view(out.dtype).reshape(chunk_shape)[part.in_chunk]


async def read_blosc_window(name: str, array: AsyncArray, window: PixelWindow, limit: asyncio.Semaphore) -> np.ndarray:
    """The window of one blosc array (see is_blosc_array): chunks fetched and decoded concurrently."""
    from zarr.core.buffer import default_buffer_prototype

    loop = asyncio.get_running_loop()
    out = np.empty(window.shape, array.dtype)
    chunk_shape = tuple(array.metadata.chunk_grid.chunk_shape)
    prototype, pool = default_buffer_prototype(), decode_pool()
    fill = array.metadata.fill_value

    async def read(part: ChunkPart) -> None:
        async with limit:
            frame = await (array.store_path / part.key).get(prototype=prototype)
            if frame is None:  # never written: only fill values there
                out[part.in_output] = fill
                return
            await loop.run_in_executor(pool, decode_into, frame.as_numpy_array(), chunk_shape, out, part, name)

    await asyncio.gather(*(read(part) for part in chunk_parts(array, window)))
    return out


async def read_windows(arrays: Mapping[str, AsyncArray], parts: Sequence[PixelWindow]) -> list[np.ndarray]:
    """Every array over every part, in order (array-major): blosc arrays decoded here, others by zarr."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(name: str, array: AsyncArray, part: PixelWindow) -> np.ndarray:
        if is_blosc_array(array):
            return await read_blosc_window(name, array, part, limit)
        return np.asarray(await array.getitem(part.slices))

    return await asyncio.gather(*(one(name, array, part) for name, array in arrays.items() for part in parts))
