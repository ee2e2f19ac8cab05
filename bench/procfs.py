"""What Linux's /proc tells of running processes: CPU time used and resident memory.

The standard library only: the measured exporter imports it before the app, and its
memory is part of what it measures.
"""

from __future__ import annotations

import os


def cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds the running processes `pids` have used so far, together
    (0 for one that is gone meanwhile)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident set of process `pid` in MB (0 when it is gone)."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int) -> float:
    """The largest resident set process `pid` has had since it started its program (0 when
    it is gone). Unlike the rusage `ru_maxrss` a parent gets when it waits for the process,
    this does not carry over the spawning process's own peak: Linux keeps the larger of the
    two across exec, so a small exporter started by a large bench process "peaked" at the
    bench's size."""
    return _status_mb(pid, "VmHWM:")


def _status_mb(pid: int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            line = next(line for line in status if line.startswith(field))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 1024
