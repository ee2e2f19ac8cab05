"""The measured process: runs the given exports at once through the local runner.

    python -m bench.exporter JOB.json RESULT.json

JOB holds {"connections": [...], "exports": [...]}; RESULT receives each run's report
and its wall time, how many segment blocks the plans read and shared, the peak of the
resident memory of this process and its worker processes together (sampled every 50 ms)
and each one's own peak,
and for each run the CPU time used while it sent (`sending_cpu_s`: from its first chunk's
start to its last chunk's end, the span of the report's `duration_s`): by this process
and its workers ("exporter"), and by each group of processes BENCH_PIDS names (a JSON
object of pid lists: the stand-ins, Azurite).
Nothing else runs in these processes, so their rusage is the exporter's (the workers'
CPU time reaches this process's rusage when it has waited for them, before it exits).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from bisect import bisect_left
from datetime import datetime
from pathlib import Path

from bench.procfs import cpu_s, peak_rss_mb, rss_mb
from runner.workers import local_workers  # the standard library only: the app is imported below


def main(job_path: str, result_path: str) -> None:
    with local_workers() as workers:  # first: the worker imports the app while this process does
        _run(job_path, result_path, workers)


def _run(job_path: str, result_path: str, workers) -> None:
    import function_app  # noqa: F401 - imported by the first run otherwise, inside its CPU window below
    from runner import run_export
    from shared.segments.sharing import shared_blocks

    # The runs start with the worker ready, as a host's workers are before its first
    # invocation: the interpreters' start is not part of any run's time or CPU.
    if workers is not None and not workers.wait_ready():
        raise RuntimeError("the worker process did not start within a minute")
    job = json.loads(Path(job_path).read_text())
    connections = {connection["name"]: connection for connection in job["connections"]}
    reports, walls, spans = {}, {}, {}

    def run(export: dict) -> None:
        name, started = export["name"], time.monotonic()
        spans[name] = span = [math.inf, -math.inf]  # epoch seconds: its chunks' first start, last end

        def chunk_done(function: str, task: object, result: object) -> None:
            if function == "export_chunk" and isinstance(result, dict) and result.get("started_at"):
                span[0] = min(span[0], datetime.fromisoformat(result["started_at"]).timestamp())
                span[1] = max(span[1], datetime.fromisoformat(result["finished_at"]).timestamp())

        reports[name] = run_export(export, connections[export["connection"]], trigger="bench", workers=workers,
                                   on_activity=chunk_done)
        walls[name] = round(time.monotonic() - started, 2)

    # As `cli.py run` and the demo have it: chunk activities in a worker process.
    def processes() -> list[int]:
        return [os.getpid(), *(workers.pids() if workers else [])]

    others = json.loads(os.environ.get("BENCH_PIDS", "{}"))
    sampler = _Sampler(processes, lambda: {"exporter": processes(), **others})
    threads = [threading.Thread(target=run, args=(export,)) for export in job["exports"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sampler.stop()
    shared = shared_blocks()  # segment blocks read from storage, and taken from another plan instead
    Path(result_path).write_text(json.dumps({"reports": reports, "walls": walls, "segment_blocks": {
        "read": shared.read_blocks, "taken": shared.taken_blocks}, "peak_rss_mb": sampler.peak_mb,
        "peak_rss_mb_each": [round(peak, 1) for peak in sampler.peaks.values()],
        "sending_cpu_s": {name: sampler.cpu_between(*span) for name, span in spans.items() if span[0] < span[1]}}))


class _Sampler:
    """Every 50 ms: the resident sets of `pids()`, for the largest sum seen (and each one's
    peak), and the CPU seconds each group of `groups()` ({name: pids}) has used so far, with
    the time, to tell what they used between two moments.

    Summed RSS counts pages the processes share (the interpreter, libraries) once per
    process: an upper bound of what they hold together."""

    def __init__(self, pids, groups):
        self._pids, self._groups, self.peak_mb = pids, groups, 0.0
        self.peaks: dict[int, float] = {}  # each process's own peak
        self._times: list[float] = []  # epoch seconds of the CPU samples, in order
        self._cpu: list[dict[str, float]] = []
        self._stopped = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._watch, name="sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        sizes = {pid: rss_mb(pid) for pid in self._pids()}
        self.peak_mb = max(self.peak_mb, sum(sizes.values()))
        for pid, size in sizes.items():
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), size)
        self._times.append(time.time())
        self._cpu.append({name: cpu_s(pids) for name, pids in self._groups().items()})

    def _watch(self) -> None:
        while not self._stopped.wait(0.05):
            self._sample()

    def stop(self) -> None:
        """The last sample; each process's own peak also from its high-water mark, which
        catches a peak between two samples (the processes are still running)."""
        self._stopped.set()
        self._thread.join()
        self._sample()
        for pid in self._pids():
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak_rss_mb(pid))

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """Each group's CPU seconds from `start` to `end` (epoch seconds), interpolated between samples."""
        return {name: round(self._cpu_at(end, name) - self._cpu_at(start, name), 2) for name in self._cpu[0]}

    def _cpu_at(self, moment: float, name: str) -> float:
        after = min(bisect_left(self._times, moment), len(self._times) - 1)
        before = max(0, after - 1 if self._times[after] > moment else after)
        low, high = self._cpu[before].get(name, 0.0), self._cpu[after].get(name, 0.0)
        span = self._times[after] - self._times[before]
        return low if span <= 0 else low + (moment - self._times[before]) / span * (high - low)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
