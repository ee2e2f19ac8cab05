"""How the worker process manages its memory: large freed buffers go back to the
operating system at once, threads share two heaps (glibc) and a plan part's freed pages
are returned when it ends, the cycle collector runs less often, and caught storage errors
release the frames they saw.

glibc serves a large allocation with its own mmap, returned when freed, until one such
block is freed: it then raises its mmap threshold to that size (up to 32 MB), and later
blocks of that size come from the heap, whose freed middle is kept. A plan moves
megabyte blocks through several threads (download, parse, encode, write) while chunks
send theirs, so a ten-million-row run kept memory it no longer used: peak 303 MB with
the moving threshold, 237 MB with it fixed (bench memory_10m, same code). Setting the
threshold explicitly fixes it at glibc's initial 128 KiB; the cost is a page fault per
4 KB of each large buffer, a few CPU-seconds for ten million rows.

The cycle collector, at CPython's default, runs a pass every 700 new containers. Parsing
a megabyte block makes a list per row (12,000 of them) which live until the block is
encoded, so those passes ran over and over across the same live rows: with the default,
parsing cost 2.4 microseconds a row; with a pass every 50,000 containers, 1.4. The
stand-ins keep every profile they were sent, so their passes grew with the run (a
quarter of their CPU in bench throughput_1m). What is imported is frozen first: it lives
as long as the process, and a full pass need not walk it.
"""

from __future__ import annotations

import ctypes
import gc
import traceback
from typing import Any

__all__ = ["collect_cycles_less_often", "fewer_malloc_arenas", "release_frames", "return_freed_memory",
           "return_large_buffers"]

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt parameters (malloc.h)
_THRESHOLD = 128 * 1024
ARENAS = 2


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc `mallopt`."""
    return _mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)


def fewer_malloc_arenas() -> bool:
    """At most ARENAS glibc heaps for the process's threads; False where there is no `mallopt`.

    glibc gives threads heaps of their own (up to 8 per core), and each keeps its freed
    middle: with a plan, its read-ahead and writes, and chunks with requests in flight,
    the exporter runs dozens of threads. The interpreter lock already serialises most
    allocations, so sharing two heaps costs no time: throughput_1m's peak 345-355 MB with
    glibc's default, 331-339 MB with two (same code, runs alternated).
    """
    return _mallopt(_M_ARENA_MAX, ARENAS)


def return_freed_memory() -> bool:
    """Give the system back the pages glibc's heaps hold free; False where there is no glibc.

    A heap returns only its free top; what a plan part freed in the middle (its blocks of
    rows, their columns, its batches: tens of MB, among objects still alive) stays
    resident, and the next part's allocations do not all fit in those holes. Called at the
    end of each plan part (`malloc_trim`, about 15 ms; 30 in throughput_1m): the
    exporter's process peaked at 197-201 MB instead of 212-218 in runs alternated with
    the code before, for well under a CPU-second of trims and of pages touched again.
    """
    trim = _glibc("malloc_trim", [ctypes.c_size_t])
    if trim is None:  # another allocator returns memory its own way
        return False
    trim(0)  # ctypes releases the interpreter lock meanwhile: the other plans go on
    return True


def _mallopt(parameter: int, value: int) -> bool:
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and mallopt(parameter, value) == 1


def _glibc(name: str, argtypes: list[Any]) -> Any:
    """glibc's function `name` (returning an int), or None where the C library has none
    (macOS, musl): the tuning above is then left to that allocator."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


# New containers between the collector's young passes (CPython's default: 700), and how
# many young passes make a middle one, and middle ones a full one (defaults: 10, 10).
COLLECT_EVERY = (50_000, 20, 100)


def collect_cycles_less_often() -> None:
    """Freeze what exists now (imported modules) and space the cycle collector's passes."""
    gc.freeze()
    gc.set_threshold(*COLLECT_EVERY)


def release_frames(error: BaseException) -> None:
    """Let a caught exception, and the frames it saw, be freed when it is dropped.

    The Azure SDK re-raises its errors from frames that hold them in a local (`error`), so
    a caught "blob not found" is a reference cycle: exception, traceback, frames. Those
    frames reach up the stack to the caller's, so the cycle kept a finished chunk
    activity's locals, its last prepared batch among them (3 MB for Snapchat), until the
    cycle collector's next pass: 220 MB more at the peak of ten million rows with the
    collector run less often. Clearing the frames' locals breaks the cycle.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips the frames still running (the caller's)
        current = current.__context__
