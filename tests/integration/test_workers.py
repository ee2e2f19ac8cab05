"""Chunk activities in worker processes (`runner.workers`, what `cli.py run`, the demo and the
benchmarks use): a run through them delivers and accounts exactly as in one process, its
chunks really run in the worker, a worker killed mid-run is replaced and its chunks resume
from their checkpoints, an activity's failure crosses with its message, and a worker dies
with the process that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import function_app
from runner import Workers, run_export
from runner.workers import ActivityFailed, worker_processes
from tests.support import assert_accounted, connection_of, upload_segment

ROOT = Path(__file__).resolve().parents[2]
PROFILES = 1_500


def _connection(stand_ins, unique: str) -> dict:
    """Braze, under a name of this test's own: a worker killed here leaves its rate budget
    entry to expire, which no other test's runs should wait for."""
    connection = connection_of(stand_ins, "braze")
    connection["name"] = f"braze-{unique}"
    return connection


def _export(unique: str, path: str, connection: dict) -> dict:
    return {"name": f"workers-{unique}", "display_name": "workers", "connection": connection["name"],
            "segments": [path], "target": {"segment_id": "w"},
            "matching": {"email": "Email", "customer_id": "CustomerId"}}


def _segment(storage, unique: str) -> str:
    return upload_segment(storage, f"{unique}/w.csv",
                          "CustomerId,Email\n" + "".join(f"C{i},p{i}@example.com\n" for i in range(PROFILES)))


def test_a_worker_tells_when_it_is_ready_for_activities():
    """The benchmarks start their runs once the worker has imported the app, as a host's
    workers are before its first invocation."""
    with Workers(1) as workers:
        assert workers.wait_ready(timeout=60)
        assert workers.pids()


def test_a_run_through_a_worker_process_delivers_and_accounts_every_row_from_there(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "300")
    # In this process a chunk activity would fail: every chunk must have run in the worker.
    monkeypatch.setattr(function_app.engine, "export_chunk", lambda task, services: 1 / 0)
    connection = _connection(stand_ins, unique)
    connection["settings"].update(batch_size=50, parallel_chunks=3)
    export = _export(unique, _segment(storage, unique), connection)
    with Workers(1) as workers:
        report = run_export(export, connection, workers=workers)
    assert report["status"] == "succeeded", report["error"]
    assert_accounted(report)
    assert report["destination"]["delivered"] == PROFILES
    assert stand_ins.braze.members("segment_w") == {f"C{i}" for i in range(PROFILES)}


def test_a_worker_killed_mid_run_is_replaced_and_its_chunks_resume_from_their_checkpoints(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "500")
    monkeypatch.setenv("PROGRESS_INTERVAL_S", "0")
    monkeypatch.setattr(stand_ins.braze, "latency_s", 0.01)  # long enough to kill the worker mid-run
    connection = _connection(stand_ins, unique)
    connection["settings"].update(batch_size=10, parallel_chunks=2, requests_in_flight=2)
    export = _export(unique, _segment(storage, unique), connection)
    killed = []

    def kill_when_sending(workers: Workers) -> None:
        deadline = time.monotonic() + 30
        while len(stand_ins.braze.log) < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        killed.extend(workers.pids())
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    with Workers(1) as workers:
        killer = threading.Thread(target=kill_when_sending, args=(workers,))
        killer.start()
        report = run_export(export, connection, workers=workers)
        killer.join()
        replaced = workers.pids()
    assert killed and replaced and set(killed).isdisjoint(replaced)
    assert report["status"] == "succeeded", report["error"]
    assert_accounted(report)
    assert report["destination"]["delivered"] == PROFILES
    assert stand_ins.braze.members("segment_w") == {f"C{i}" for i in range(PROFILES)}
    # Resumed from the progress records: no more than the batches in flight at the kill were sent twice.
    settings = connection["settings"]
    assert len(stand_ins.braze.log) <= PROFILES // 10 + settings["parallel_chunks"] * settings["requests_in_flight"]


def test_the_number_of_worker_processes_is_a_setting_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("LOCAL_WORKER_PROCESSES", "0")
    assert worker_processes() == 0
    monkeypatch.setenv("LOCAL_WORKER_PROCESSES", "2")
    assert worker_processes() == 2
    monkeypatch.setenv("LOCAL_WORKER_PROCESSES", "two")
    with pytest.raises(ValueError, match="LOCAL_WORKER_PROCESSES must be a number of processes"):
        worker_processes()


def test_an_activity_that_fails_in_a_worker_fails_with_its_type_and_message(app_env):
    with Workers(1) as workers, pytest.raises(ActivityFailed, match="KeyError: 'no_such_activity'"):
        workers.call("no_such_activity", json.dumps({}))


def test_a_worker_dies_with_the_process_that_started_it(app_env, tmp_path):
    # A second process keeps the worker's input open, so only the parent's death can end it.
    script = ("import os, time; from runner import Workers; w = Workers(1); print(w.pids()[0], flush=True); "
              "holder = os.fork(); holder == 0 and time.sleep(30); print(holder, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    worker, holder = int(parent.stdout.readline()), int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.02)
    finally:
        os.kill(holder, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited: its parent (init, here) has not reaped it yet
