"""A worker process of the local runner (`runner.workers`): runs the activities it reads.

    python -m runner.worker    (started by runner.workers.Workers, LOCAL_WORKER_PARENT=<its pid>)

Reads one JSON line per activity on stdin ({"id", "function", "input"}), runs each on a
thread of its own, and writes one JSON line per outcome on stdout ({"id", "result"} or
{"id", "error"}), after a first line {"ready": true} once the app is imported. Anything
else the process prints goes to stderr, with its log records from LOCAL_WORKER_LOG_LEVEL
up (WARNING by default). Exits when stdin closes and the activities it holds have
finished; ends within a few milliseconds of the runner's process (0.1 s at most), as a
host's workers go down with their host, so a killed run is killed whole.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def main() -> None:
    stdin_closed = _die_with_parent()
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints and logs stay off the results
    sys.stdout = sys.stderr
    logging.basicConfig(level=os.environ.get("LOCAL_WORKER_LOG_LEVEL", "WARNING").upper(), stream=sys.stderr,
                        format="worker %(process)d %(levelname)s %(name)s: %(message)s")

    import function_app  # sets the worker up as the Functions worker would (shared/worker.py)

    from .orchestration import registered

    _, activities = registered(function_app.app)
    written = threading.Lock()
    results.write('{"ready": true}\n')
    results.flush()

    def run(message: dict[str, Any]) -> None:
        try:
            outcome = {"id": message["id"], "result": activities[message["function"]](message["input"])}
            line = json.dumps(outcome)
        except Exception as error:  # the runner raises it into the orchestrator, as the host would
            line = json.dumps({"id": message["id"], "error": f"{type(error).__name__}: {error}"})
        with written:
            results.write(line + "\n")
            results.flush()

    # As many activities at once as the runner gives (it bounds them): its threads wait on these.
    with ThreadPoolExecutor(max_workers=128, thread_name_prefix="activity") as pool:
        for line in sys.stdin:
            pool.submit(run, json.loads(line))
        stdin_closed.set()  # the runner closed it, or died: its end of the pipe closes with it


def _die_with_parent() -> threading.Event:
    """Exit as soon as the runner's process is gone (its pid is no longer this one's parent).

    Not prctl's parent-death signal: that fires when the *thread* that started the worker
    ends, and a replacement worker is started from one of the runner's activity threads.
    A runner that dies closes the worker's stdin first, so once stdin is closed (the event
    returned) the parent is watched every millisecond: a worker that went on sending for
    its 0.1 s of polling while `run --resume` started sent batches twice.
    """
    parent = int(os.environ.get(PARENT, "0")) or os.getppid()  # the runner, which may have died while this started
    stdin_closed = threading.Event()

    def watch() -> None:
        while os.getppid() == parent:
            if stdin_closed.is_set():  # closed by the runner, or the runner is dying: tell which soon
                time.sleep(CLOSED_POLL_S)
            else:
                stdin_closed.wait(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return stdin_closed


PARENT = "LOCAL_WORKER_PARENT"  # set by runner.workers: the pid of the process that started the worker
PARENT_POLL_S = 0.1
CLOSED_POLL_S = 0.001


if __name__ == "__main__":
    main()
