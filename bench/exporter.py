"""The measured process: runs the given exports at once through the local runner.

    python -m bench.exporter JOB.json RESULT.json

JOB holds {"connections": [...], "exports": [...]}; RESULT receives each run's report
and its wall time, and how many segment blocks the plans read and shared. Nothing else
runs in this process, so its rusage is the exporter's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from runner import run_export
from shared.segments.sharing import shared_blocks


def main(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    connections = {connection["name"]: connection for connection in job["connections"]}
    reports, walls = {}, {}

    def run(export: dict) -> None:
        started = time.monotonic()
        reports[export["name"]] = run_export(export, connections[export["connection"]], trigger="bench")
        walls[export["name"]] = round(time.monotonic() - started, 2)

    threads = [threading.Thread(target=run, args=(export,)) for export in job["exports"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared = shared_blocks()  # segment blocks read from storage, and taken from another plan instead
    Path(result_path).write_text(json.dumps({"reports": reports, "walls": walls, "segment_blocks": {
        "read": shared.read_blocks, "taken": shared.taken_blocks}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
