"""Large freed buffers go back to the operating system at once (glibc).

glibc serves a large allocation with its own mmap, returned when freed, until one such
block is freed: it then raises its mmap threshold to that size (up to 32 MB), and later
blocks of that size come from the heap, whose freed middle is kept. A plan moves
megabyte blocks through several threads (download, parse, encode, write) while chunks
send theirs, so a ten-million-row run kept memory it no longer used: peak 303 MB with
the moving threshold, 237 MB with it fixed (bench memory_10m, same code). Setting the
threshold explicitly fixes it at glibc's initial 128 KiB; the cost is a page fault per
4 KB of each large buffer, a few CPU-seconds for ten million rows.
"""

from __future__ import annotations

import ctypes

__all__ = ["return_large_buffers"]

_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
_THRESHOLD = 128 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc `mallopt`."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to do
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
