"""What a process that reads plans and sends chunks sets up once, at its start: the
Functions worker (`function_app.py`) and the local runner alike."""

from __future__ import annotations

from .http.headers import read_headers_directly
from .memory import collect_cycles_less_often, fewer_malloc_arenas, return_large_buffers

__all__ = ["set_up_worker"]


def set_up_worker() -> None:
    return_large_buffers()  # megabyte blocks move through several threads
    fewer_malloc_arenas()  # dozens of threads, each of which glibc would give a heap
    collect_cycles_less_often()  # a plan makes a list per row: the default collector kept walking them
    read_headers_directly()  # every request's answer: the email package's parser was ~6% of the CPU
