"""Handing the memory a fill freed back to the operating system, so a process that loads scene after scene stays small.

A fill allocates and frees chunk pixels, decoded COG blocks and encoded chunk objects on many threads. glibc keeps
freed memory in its per-thread arenas for reuse, and the load's result arrays are new mappings on top of it.
`malloc_trim(0)` hands the free pages of every arena back, and each fill ends with it. Six 2 m scenes of 94-177 Mpx
loaded one after the other in one process peaked at 1.5 GB resident with it and 2.5 GB without, in the same time
within the noise (benchmarks/README.md, "Memory of a campaign worker").

Elsewhere (macOS, Windows, musl) there is no `malloc_trim` and nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from functools import lru_cache

log = logging.getLogger(__name__)
MB = 2**20


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (looked up in the process, no `ldconfig` run)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # no such symbol (macOS, musl), or no process namespace (Windows)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux: /proc/self/statm), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_freed_memory(after: str) -> int | None:
    """Hand the C library's free pages back to the system; the bytes of resident memory that released (None: no-op).

    `after` names what freed the memory, for the debug log line.
    """
    trim = _malloc_trim()
    if trim is None:
        return None
    before = resident_bytes()
    trim(0)
    now = resident_bytes()
    if before is None or now is None:
        return None
    released = max(0, before - now)
    log.debug("after %s: returned %d MB of freed memory to the system (%d MB resident now)", after,
              released // MB, now // MB)
    return released
