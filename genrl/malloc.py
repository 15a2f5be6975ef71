"""glibc malloc settings for CPU runs: keep freed tensor memory in the process instead of handing it back to the OS.

torch's CPU allocator is plain malloc. glibc serves a block above its mmap threshold (128 KiB at start, raised
dynamically up to 32 MiB) with its own mmap and unmaps it on free, and it trims the top of the heap once more than
the trim threshold is free there. A training step frees and re-allocates the same activation sizes on every
forward, so each step faults its whole working set in again, page by zeroed page (the CPU demo: ~70,000 minor
faults per step). Fixing the mmap threshold at its 32 MiB maximum and never trimming keeps those pages mapped; the
cost is that the process's resident memory stays at its peak (it does not shrink between phases).

Allocation does not change what is computed: results are bit-identical (benchmarks/malloc.md has the measurement).
A no-op where the C library is not glibc, or when GENRL_MALLOC_TUNING=0 in the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2); larger blocks are always mmapped
TOP_PAD = 64 * 2**20  # grow the heap in 64 MiB steps instead of 128 KiB


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when they were applied."""
    if os.environ.get("GENRL_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt, _ = libc.mallopt, libc.gnu_get_libc_version  # glibc only: the thresholds below are glibc's
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # int max: trim only beyond 2 GiB of free heap top
    ok &= mallopt(_M_TOP_PAD, TOP_PAD) == 1
    return bool(ok)
