"""Freed memory goes back to the system: glibc keeps what a program frees for reuse, malloc_trim hands it back."""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

import pytest

from darts_aux.freed_memory import release_freed_memory, resident_bytes

MB = 2**20
BLOCK = 64 * 1024
"""Below glibc's mmap threshold: served from the heap, which keeps the block once freed."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    return libc


@pytest.mark.skipif(sys.platform != "linux", reason="glibc and /proc: the platform the pipelines run on")
def test_memory_freed_on_the_heap_is_resident_until_released(caplog: pytest.LogCaptureFixture) -> None:
    libc = _libc()
    start = resident_bytes()
    assert start is not None
    blocks = [libc.malloc(BLOCK) for _ in range(4000)]  # 250 MB in small blocks, each written to
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    kept_blocks, freed_blocks = blocks[1::2], blocks[::2]  # every other block stays: the heap cannot shrink
    try:
        for block in freed_blocks:
            libc.free(block)
        kept = resident_bytes()
        assert kept is not None and kept - start > 100 * MB, "glibc keeps the freed blocks resident"
        with caplog.at_level(logging.DEBUG, logger="darts_aux.freed_memory"):
            released = release_freed_memory("the test's blocks")
        now = resident_bytes()
        assert released is not None and released > 100 * MB
        assert now is not None and kept - now > 100 * MB, "the pages really left this process"
        [record] = caplog.records
        assert record.getMessage().startswith(f"after the test's blocks: returned {released // MB} MB of freed memory")
    finally:
        for block in kept_blocks:
            libc.free(block)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/status, the kernel's own account")
def test_resident_bytes_is_what_the_kernel_reports_for_this_process() -> None:
    status = Path("/proc/self/status").read_text()
    ours = resident_bytes()
    kernel = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    assert ours is not None and abs(ours - kernel) < 4 * MB
