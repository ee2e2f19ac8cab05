"""A run killed part-way (the process, with SIGKILL) and resumed sends no confirmed batch again."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner import run_export
from shared.engine import Services
from tests.support import assert_accounted, connection_of, upload_segment

ROOT = Path(__file__).resolve().parents[2]
PROFILES = 2_000


def test_a_killed_run_resumes_from_its_checkpoints_without_resending_confirmed_batches(
        app_env, stand_ins, storage, unique, tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "200")
    monkeypatch.setenv("PROGRESS_INTERVAL_S", "0")  # a progress record after every confirmed batch
    monkeypatch.setattr(stand_ins.braze, "latency_s", 0.01)  # long enough to kill it mid-run
    path = upload_segment(storage, f"{unique}/big.csv",
                          "CustomerId,Email\n" + "".join(f"C{i},p{i}@example.com\n" for i in range(PROFILES)))
    connection = connection_of(stand_ins, "braze")
    connection["settings"].update(batch_size=10, parallel_chunks=2, requests_in_flight=2)
    export = {"name": f"resume-{unique}", "display_name": "resume", "connection": connection["name"],
              "segments": [path], "target": {"segment_id": "r"},
              "matching": {"email": "Email", "customer_id": "CustomerId"}}
    config = tmp_path / "definitions.json"
    config.write_text(json.dumps({"connections": [connection], "exports": [export]}))

    cli = subprocess.Popen([sys.executable, "cli.py", "run", "--config", str(config), "--export", export["name"]],
                           cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(confirmed(stand_ins)) < 60 and time.monotonic() < deadline and cli.poll() is None:
        time.sleep(0.005)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    sent_before_kill = len(confirmed(stand_ins))
    assert 60 <= sent_before_kill < PROFILES // 10, "the run was not killed part-way"

    run_id = Services.current().runs.run_ids(export["name"])[0]
    report = run_export(export, connection, resume=run_id)

    assert report["run_id"] == run_id and report["status"] == "succeeded"
    assert_accounted(report)
    assert report["destination"]["delivered"] == PROFILES
    assert stand_ins.braze.members("segment_r") == {f"C{i}" for i in range(PROFILES)}
    # Each batch reached Braze once, except those in flight in a chunk activity that was
    # running when the process died: their answers arrived, but the kill came before they were recorded.
    sent_twice = [digest for digest, n in collections.Counter(confirmed(stand_ins)).items() if n > 1]
    settings = connection["settings"]
    assert len(sent_twice) <= settings["parallel_chunks"] * settings["requests_in_flight"]
    assert len(confirmed(stand_ins)) <= PROFILES // 10 + len(sent_twice)
    checkpoints = Services.current().runs.checkpoints(export["name"], run_id)
    assert any(c.get("resumed_after_row") for c in checkpoints), "no chunk continued mid-way"


def confirmed(stand_ins) -> list[str]:
    return [entry["digest"] for entry in stand_ins.braze.requests("POST", "/users/track") if entry["status"] == 201]


def test_progress_is_recorded_after_every_batch_or_at_most_once_per_interval(
        app_env, stand_ins, storage, unique, monkeypatch):
    path = upload_segment(storage, f"{unique}/s.csv",
                          "CustomerId,Email\n" + "".join(f"C{i},p{i}@example.com\n" for i in range(100)))
    connection = connection_of(stand_ins, "braze")
    connection["settings"]["batch_size"] = 10
    export = {"name": f"progress-{unique}", "display_name": "p", "connection": connection["name"],
              "segments": [path], "target": {"segment_id": "p"},
              "matching": {"email": "Email", "customer_id": "CustomerId"}}
    monkeypatch.setenv("CHUNK_ROWS", "1000")  # one chunk
    runs = {}
    for interval in ("0", "3600"):
        monkeypatch.setenv("PROGRESS_INTERVAL_S", interval)
        runs[interval] = run_export(export, connection)["run_id"]
    store = Services.current().runs
    assert len(store.progress(export["name"], runs["0"], 0)) == 10  # one record per batch
    assert store.progress(export["name"], runs["3600"], 0) == []  # only the final checkpoint


def test_a_chunk_keeps_its_requests_in_flight_at_once_and_no_more(app_env, stand_ins, storage, unique, monkeypatch):
    """Several requests in flight per chunk (a far vendor's round trips), accounted as if sent one by one."""
    path = upload_segment(storage, f"{unique}/s.csv",
                          "CustomerId,Email\n" + "".join(f"C{i},p{i}@example.com\n" for i in range(120)))
    connection = connection_of(stand_ins, "braze")
    connection["settings"].update(batch_size=10, parallel_chunks=1)
    export = {"name": f"flight-{unique}", "display_name": "f", "connection": connection["name"],
              "segments": [path], "target": {"segment_id": "f"},
              "matching": {"email": "Email", "customer_id": "CustomerId"}}
    monkeypatch.setenv("CHUNK_ROWS", "1000")  # one chunk of 12 batches
    monkeypatch.setenv("PROGRESS_INTERVAL_S", "0")
    monkeypatch.setattr(stand_ins.braze, "latency_s", 0.05)
    peaks = {}
    for in_flight in (1, 3):
        connection["settings"]["requests_in_flight"] = in_flight
        stand_ins.braze.peak_in_progress = 0
        report = run_export(export, connection)
        assert_accounted(report)
        assert report["destination"]["delivered"] == 120
        peaks[in_flight] = stand_ins.braze.peak_in_progress
        records = Services.current().runs.progress(export["name"], report["run_id"], 0)
        assert [record["through"] for record in records] == list(range(10, 121, 10))  # in order, one per batch
    assert peaks == {1: 1, 3: 3}


def _small_run(stand_ins, storage, unique, rows):
    path = upload_segment(storage, f"{unique}/small.csv", "CustomerId,Email\n" + rows)
    connection = connection_of(stand_ins, "braze")
    export = {"name": f"again-{unique}", "display_name": "again", "connection": connection["name"],
              "segments": [path], "target": {"segment_id": "again"},
              "matching": {"email": "Email", "customer_id": "CustomerId"}}
    return path, connection, export


def test_resuming_after_the_segment_changed_is_refused_and_keeps_the_accounting(app_env, stand_ins, storage,
                                                                                unique):
    rows = "".join(f"C{i},p{i}@example.com\n" for i in range(30))
    path, connection, export = _small_run(stand_ins, storage, unique, rows)
    first = run_export(export, connection)
    assert first["destination"]["delivered"] == 30
    upload_segment(storage, path, "CustomerId,Email\n" + rows + "C99,late@example.com\n")  # replaced since
    again = run_export(export, connection, resume=first["run_id"])
    assert again["status"] == "failed" and "changed since the run was planned" in again["error"]
    # What was delivered stays in the report: the plan's chunks are kept, read from their checkpoints.
    assert again["destination"]["delivered"] == 30 and again["destination"]["input_rows"] == 30
    assert_accounted(again)


def test_a_run_whose_plan_failed_is_not_planned_again_on_resume(app_env, stand_ins, storage, unique, monkeypatch):
    """Planned again under the same run id, it met the first plan's checkpoints and took them
    for its own chunks: rows added since were reported delivered and never sent."""
    from shared.segments import parsing

    monkeypatch.setenv("CHUNK_ROWS", "75")
    monkeypatch.setattr(parsing, "BLOCK_BYTES", 64)  # the unclosed quote is met by a later part
    rows = "".join(f"C{i},p{i}@example.com\n" for i in range(300)) + 'C300,"unclosed@example.com\n'
    path, connection, export = _small_run(stand_ins, storage, unique, rows)
    first = run_export(export, connection)
    assert first["status"] == "failed" and first["destination"]["delivered"] == 300
    corrected = "C-new,new@example.com\n" + "".join(f"C{i},p{i}@example.com\n" for i in range(301))
    upload_segment(storage, path, "CustomerId,Email\n" + corrected)
    again = run_export(export, connection, resume=first["run_id"])
    counts = ("input_rows", "delivered", "rejected", "skipped", "reasons")
    assert again["status"] == "failed" and again["error"] == first["error"]
    assert {key: again["destination"][key] for key in counts} == {key: first["destination"][key] for key in counts}
    assert "C-new" not in stand_ins.braze.members("segment_again")
