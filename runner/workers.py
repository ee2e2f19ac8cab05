"""Worker processes for the local runner: chunk activities run in interpreters of their own.

In Azure the Functions host hands activities to Python worker processes on as many
instances as the app scales to. Locally, `Workers(n)` starts n processes
(`python -m runner.worker`), each importing `function_app` and running the chunk
activities it is given on its own threads, while the plan stays in the runner's process
(where a segment's blocks are shared by the exports reading it). So the senders and the
plan do not take turns with one interpreter lock: measured on a rate-limited Braze run,
a chunk alone with the plan in one interpreter sent ~50 requests/s of its 1,000.
The rate limit holds across processes: each has its pacer, and they share the
connection's limit through its rate budget (`shared.budgets`).

Inputs and results cross as JSON lines, as they cross to the host. A worker that dies
fails the activities it held (the orchestrator's retry runs them again, from their
checkpoints) and is started again for the next one.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["ActivityFailed", "Workers", "local_workers", "worker_processes"]

ROOT = Path(__file__).resolve().parent.parent
IN_WORKERS = frozenset({"export_chunk"})  # plans stay in the runner's process, with their shared blocks


class ActivityFailed(Exception):
    """An activity raised in a worker process (its type and message), or the worker died."""


def worker_processes() -> int:
    """Worker processes for local runs: LOCAL_WORKER_PROCESSES, else 1 on a machine of two
    cores or more (0 runs everything in the runner's process)."""
    configured = os.environ.get("LOCAL_WORKER_PROCESSES", "").strip()
    if not configured:
        return 1 if (os.cpu_count() or 1) >= 2 else 0
    if not configured.isdigit():
        raise ValueError(f"LOCAL_WORKER_PROCESSES must be a number of processes (0: none), not {configured!r}")
    return int(configured)


@contextmanager
def local_workers() -> Iterator[Workers | None]:
    """The worker processes local runs use (`worker_processes()` of them), or None for none."""
    count = worker_processes()
    if not count:
        yield None
        return
    with Workers(count) as workers:
        yield workers


class Workers:
    """`processes` worker processes taking activities in turn; started with this process's
    environment as it is now (storage, secrets)."""

    def __init__(self, processes: int = 1, env: Mapping[str, str] | None = None):
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment["LOCAL_WORKER_PARENT"] = str(os.getpid())
        self._processes = [_Process(environment) for _ in range(max(1, processes))]
        self._turn = itertools.count()
        for process in self._processes:  # importing the app takes a second: meanwhile the plan starts
            process.start()

    def takes(self, function: str) -> bool:
        return function in IN_WORKERS

    def call(self, function: str, payload: str) -> Any:
        """Run activity `function` on `payload` (its input as JSON) in a worker; its result, or ActivityFailed."""
        process = self._processes[next(self._turn) % len(self._processes)]
        return process.submit(function, payload).result()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until every worker has imported the app (as a host's workers are before its
        first invocation); False if one is not ready within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        return all(process.ready.wait(max(0.0, deadline - time.monotonic())) for process in self._processes)

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return [pid for process in self._processes if (pid := process.pid) is not None]

    def close(self) -> None:
        for process in self._processes:
            process.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Process:
    def __init__(self, env: dict[str, str]):
        self._env = env
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._popen: subprocess.Popen | None = None
        self._pending: dict[int, Future] = {}
        self.ready = threading.Event()  # set once the running worker has imported the app

    def submit(self, function: str, payload: str) -> Future:
        future: Future = Future()
        with self._lock:
            if self._popen is None or self._popen.poll() is not None:
                self._start()  # first use, or the worker died
            assert self._popen is not None and self._popen.stdin is not None
            ident = next(self._ids)
            self._pending[ident] = future
            try:
                self._popen.stdin.write(f'{{"id": {ident}, "function": {json.dumps(function)}, "input": {payload}}}\n')
                self._popen.stdin.flush()
            except OSError as error:  # the worker died: its reader fails what it held
                self._pending.pop(ident, None)
                future.set_exception(ActivityFailed(f"the worker process is gone ({error.strerror})"))
        return future

    @property
    def pid(self) -> int | None:
        popen = self._popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        self._pending = {}
        self.ready = threading.Event()
        self._popen = subprocess.Popen([sys.executable, "-m", "runner.worker"], cwd=ROOT, env=self._env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
        threading.Thread(target=self._read, args=(self._popen, self._pending, self.ready), name="worker-results",
                         daemon=True).start()

    def _read(self, popen: subprocess.Popen, pending: dict[int, Future], ready: threading.Event) -> None:
        stream: IO[str] = popen.stdout  # type: ignore[assignment]
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:  # not the protocol: the worker cannot be trusted with more
                popen.kill()
                break
            if message.get("ready"):
                ready.set()
                continue
            with self._lock:
                future = pending.pop(message["id"])
            if "error" in message:
                future.set_exception(ActivityFailed(message["error"]))
            else:
                future.set_result(message["result"])
        code = popen.wait()
        with self._lock:
            lost = list(pending.values())
            pending.clear()
        for future in lost:
            future.set_exception(ActivityFailed(f"the worker process exited (code {code}) while running it"))

    def close(self) -> None:
        with self._lock:
            popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.stdin is not None:
            try:
                popen.stdin.close()  # the worker finishes what it holds, then exits
            except OSError:
                pass
        try:
            popen.wait(timeout=120)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
