"""The measured process: runs the given exports at once through the local runner.

    python -m bench.exporter JOB.json RESULT.json

JOB holds {"connections": [...], "exports": [...]}; RESULT receives each run's report
and its wall time, how many segment blocks the plans read and shared, and the peak of the
resident memory of this process and its worker processes together (sampled every 50 ms).
Nothing else runs in these processes, so their rusage is the exporter's (the workers'
CPU time reaches this process's rusage when it has waited for them, before it exits).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from runner.workers import local_workers  # the standard library only: the app is imported below


def main(job_path: str, result_path: str) -> None:
    with local_workers() as workers:  # first: the worker imports the app while this process does
        _run(job_path, result_path, workers)


def _run(job_path: str, result_path: str, workers) -> None:
    from runner import run_export
    from shared.segments.sharing import shared_blocks

    job = json.loads(Path(job_path).read_text())
    connections = {connection["name"]: connection for connection in job["connections"]}
    reports, walls = {}, {}

    def run(export: dict) -> None:
        started = time.monotonic()
        reports[export["name"]] = run_export(export, connections[export["connection"]], trigger="bench",
                                             workers=workers)
        walls[export["name"]] = round(time.monotonic() - started, 2)

    # As `cli.py run` and the demo have it: chunk activities in a worker process.
    memory = _PeakMemory(lambda: [os.getpid(), *(workers.pids() if workers else [])])
    threads = [threading.Thread(target=run, args=(export,)) for export in job["exports"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    memory.stop()
    shared = shared_blocks()  # segment blocks read from storage, and taken from another plan instead
    Path(result_path).write_text(json.dumps({"reports": reports, "walls": walls, "segment_blocks": {
        "read": shared.read_blocks, "taken": shared.taken_blocks}, "peak_rss_mb": memory.peak_mb,
        "peak_rss_mb_each": [round(peak, 1) for peak in memory.peaks.values()]}))


class _PeakMemory:
    """The largest sum of the resident sets of `pids()` seen, sampled every 50 ms.

    Summed RSS counts pages the processes share (the interpreter, libraries) once per
    process: an upper bound of what they hold together."""

    def __init__(self, pids):
        self._pids, self.peak_mb = pids, 0.0
        self.peaks: dict[int, float] = {}  # each process's own peak
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopped.wait(0.05):
            sizes = {pid: _rss_mb(pid) for pid in self._pids()}
            self.peak_mb = max(self.peak_mb, sum(sizes.values()))
            for pid, size in sizes.items():
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), size)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):  # gone meanwhile
        return 0.0
    return int(line.split()[1]) / 1024


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
