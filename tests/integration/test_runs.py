"""Whole runs through the local runner: function_app's orchestrations, Azurite, the vendor stand-ins.

Each run is checked three ways: the audience the stand-in holds, the report's counts and
reasons, and the accounting invariant (input rows = delivered + rejected + skipped).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json

import pytest

import function_app
from runner import run_export
from sandbox.bundle import AUDIENCE_ID, LIST_ID
from shared.engine import Services
from tests.support import assert_accounted, connection_of, upload_segment, watch_parsed_blocks

HEADER = "CustomerId,Email,Name,Consent"
SPECIAL_ROWS = [
    "C1, Ana@Example.com ,Ana,yes",  # 1 valid, odd case and spaces
    "C2,ben@example.com,Ben,no",  # 2 valid
    "C3,not-an-email,Cy,",  # 3 invalid email
    "C1,ana@example.com,Ana again,",  # 4 duplicate of row 1 (same email, same customer id)
    "C5,,Eve,",  # 5 no email (Braze: still a member)
    ",carl@example.com,Carl,",  # 6 no customer id (Braze: skipped)
    'C7,dora@example.com,"Dora, the ""explorer""\nsecond line",yes',  # 7 quoted comma, quote, newline
    "C8,fred@example.com",  # 8 too few fields
    "C9,blocked@example.com,Bob,",  # 9 refused by the vendor
]
GENERATED = 60  # rows 10..69: enough for several chunks and batches
BLOCKED = "blocked@example.com"


def segment_text() -> str:
    generated = [f"G{i},person{i}@example.com,Person {i}," for i in range(GENERATED)]
    return "\r\n".join([HEADER, *SPECIAL_ROWS, *generated]) + "\r\n"


VALID = {"ana@example.com", "ben@example.com", "carl@example.com", "dora@example.com", BLOCKED} | {
    f"person{i}@example.com" for i in range(GENERATED)}
INPUT_ROWS = len(SPECIAL_ROWS) + GENERATED


def export_for(type_: str, unique: str, path: str) -> dict:
    base = {"name": f"t-{type_.replace('_', '-')}-{unique}", "display_name": "test", "segments": [path],
            "connection": f"sandbox-{type_.replace('_', '-')}"}
    return {
        "snapchat": {**base, "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}},
        "braze": {**base, "target": {"segment_id": "t"},
                  "matching": {"email": "Email", "customer_id": "CustomerId", "attributes": {"first_name": "Name"}}},
        "omnisend": {**base, "target": {"tag": "t"}, "matching": {"email": "Email", "consent": "Consent"}},
        "campaign_monitor": {**base, "target": {"list_id": LIST_ID},
                             "matching": {"email": "Email", "attributes": {"name": "Name"}}},
    }[type_]


def small_batches(stand_ins, type_: str) -> dict:
    connection = connection_of(stand_ins, type_)
    connection["settings"].update(batch_size=7, parallel_chunks=3)
    return connection


@pytest.fixture
def refusing(stand_ins, monkeypatch):
    """Every vendor refuses BLOCKED its own way (Snapchat cannot refuse single identifiers)."""
    monkeypatch.setattr(stand_ins.braze, "refuse_emails", {BLOCKED})
    monkeypatch.setattr(stand_ins.omnisend, "refuse_emails", {BLOCKED})
    monkeypatch.setattr(stand_ins.campaign_monitor, "suppressed", {BLOCKED})
    return stand_ins


def held(stand_ins, type_: str) -> set[str]:
    return {"snapchat": lambda: set(stand_ins.snapchat.audiences[AUDIENCE_ID]),
            "braze": lambda: stand_ins.braze.members("segment_t"),
            "omnisend": lambda: stand_ins.omnisend.tagged("t"),
            "campaign_monitor": lambda: stand_ins.campaign_monitor.active(LIST_ID)}[type_]()


def expected(type_: str) -> set[str]:
    if type_ == "snapchat":
        return {hashlib.sha256(email.encode()).hexdigest() for email in VALID}
    if type_ == "braze":
        return {"C1", "C2", "C5", "C7"} | {f"G{i}" for i in range(GENERATED)}
    return VALID - {BLOCKED}


@pytest.mark.parametrize("type_", ["snapchat", "braze", "omnisend", "campaign_monitor"])
def test_a_run_delivers_every_valid_profile_and_accounts_for_every_row(type_, app_env, refusing, storage, unique,
                                                                       monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "20")
    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    report = run_export(export_for(type_, unique, path), small_batches(refusing, type_))

    assert report["status"] == "succeeded", report["error"]
    assert held(refusing, type_) == expected(type_)
    assert_accounted(report)
    destination = report["destination"]
    assert destination["input_rows"] == INPUT_ROWS
    assert report["chunks"] > 1
    reasons = destination["reasons"]
    assert reasons["rejected"]["invalid email: no @"] == 1
    assert reasons["rejected"]["row has 2 fields, the header has 4"] == 1
    assert reasons["skipped"]["duplicate of an earlier row"] == 1
    if type_ == "braze":
        assert reasons["skipped"] == {"duplicate of an earlier row": 1, "missing customer id": 1}
    else:
        assert reasons["skipped"] == {"duplicate of an earlier row": 1, "missing email": 1}
    vendor_refusals = {reason: n for reason, n in reasons["rejected"].items()
                       if not reason.startswith(("invalid", "row"))}
    assert sum(vendor_refusals.values()) == (0 if type_ == "snapchat" else 1)
    assert destination["delivered"] == len(expected(type_))


def test_the_rejected_rows_file_lists_row_identifier_reason_and_who_refused(app_env, refusing, storage, unique,
                                                                            monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "20")
    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    report = run_export(export_for("campaign_monitor", unique, path), small_batches(refusing, "campaign_monitor"))
    blob = report["destination"]["rejected_rows_file"]
    text = storage.container("export-runs").download_blob(blob).readall().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["row"], r["identifier"], r["reason"], r["refused_by"]) for r in rows] == [
        ("3", "not-an-email", "invalid email: no @", "export"),
        ("8", "fred@example.com", "row has 2 fields, the header has 4", "export"),
        ("9", BLOCKED, "Campaign Monitor: In Suppression List (code 204)", "Campaign Monitor"),
    ]
    assert {r["segment"] for r in rows} == {path}


def test_omnisend_subscribes_only_rows_whose_consent_column_says_yes(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    run_export(export_for("omnisend", unique, path), connection_of(stand_ins, "omnisend"))
    subscribed = {e for e, c in stand_ins.omnisend.contacts.items() if c["status"] == "subscribed"}
    assert subscribed == {"ana@example.com", "dora@example.com"}


def test_duplicates_are_found_across_all_segments_of_an_export(app_env, stand_ins, storage, unique):
    first = upload_segment(storage, f"{unique}/a.csv", "Email\nana@example.com\nben@example.com\n")
    second = upload_segment(storage, f"{unique}/b.csv", "email\nBEN@example.com\ncy@example.com\n")
    export = {**export_for("campaign_monitor", unique, first), "segments": [first, second],
              "matching": {"email": "Email"}}
    report = run_export(export, connection_of(stand_ins, "campaign_monitor"))
    assert_accounted(report)
    assert report["destination"]["delivered"] == 3 and report["destination"]["skipped"] == 1
    assert [s["rows"] for s in report["segments"]] == [2, 2]


def test_a_plan_holds_one_block_of_parsed_rows_at_a_time(app_env, stand_ins, storage, unique, monkeypatch):
    # Rows take ~7 times their bytes: a plan that kept the block it had used while parsing
    # the next held twice the memory (at a million profiles, four plans: ~60 MB).
    body = "".join(f"G{i},person{i}@example.com,Person {i},\n" for i in range(60_000))  # ~2.3 MB: several blocks
    path = upload_segment(storage, f"{unique}/segment.csv", HEADER + "\n" + body)
    alive = watch_parsed_blocks(monkeypatch)
    report = run_export(export_for("snapchat", unique, path), connection_of(stand_ins, "snapchat"))
    assert report["status"] == "succeeded", report["error"]
    assert report["destination"]["delivered"] == 60_000
    assert len(alive) > 4 and alive == [0] * len(alive)


def test_exports_of_one_segment_run_at_once_share_its_blocks_and_each_account_for_every_row(
        app_env, stand_ins, storage, unique, monkeypatch):
    import threading

    from shared.engine import planning
    from shared.segments.sharing import shared_blocks

    body = "".join(f"C{i},person{i}@example.com,Person {i},yes\n" for i in range(60_000))  # ~2.3 MB: several blocks
    path = upload_segment(storage, f"{unique}/segment.csv", HEADER + "\n" + body)
    together = threading.Barrier(2, timeout=30)  # both plans start reading at once, as a schedule starts them
    monkeypatch.setattr(function_app.engine, "plan_run", lambda request, services: together.wait() is not None and
                        planning.plan_run(request, services))
    shared = shared_blocks()
    read_before, taken_before = shared.read_blocks, shared.taken_blocks
    types, reports = ("snapchat", "campaign_monitor"), {}
    threads = [threading.Thread(target=lambda t=type_: reports.update(
        {t: run_export(export_for(t, unique, path), connection_of(stand_ins, t))})) for type_ in types]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for type_ in types:
        assert reports[type_]["status"] == "succeeded", reports[type_]["error"]
        assert reports[type_]["destination"]["delivered"] == 60_000
        assert_accounted(reports[type_])
    assert held(stand_ins, "campaign_monitor") == {f"person{i}@example.com" for i in range(60_000)}
    info = storage.segments.info(path)
    blocks = sum(1 for _ in storage.segments.blocks(path, info.data_start, info.size))
    read, taken = shared.read_blocks - read_before, shared.taken_blocks - taken_before
    # Each plan reading the file for itself would read 2 x blocks (and more: a part goes on
    # from the start of the block where the one before stopped).
    assert read + taken >= 2 * blocks and read < 1.5 * blocks, (read, taken, blocks)
    assert shared.held() == 0


def test_the_run_status_route_serves_the_finished_report(app_env, stand_ins, storage, unique):
    import azure.functions as func

    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    report = run_export(export_for("snapchat", unique, path), connection_of(stand_ins, "snapchat"))
    name = report["export"]
    request = func.HttpRequest("GET", f"/api/exports/{name}/runs/{report['run_id']}", body=b"",
                               route_params={"name": name, "run_id": report["run_id"]})
    # A run with a report is found in storage: the Durable client (None here) is not asked.
    response = asyncio.run(function_app.get_run.build().get_user_function().__wrapped__(request, None))
    assert response.status_code == 200
    assert json.loads(response.get_body()) == report
    assert Services.current().runs.run_ids(name) == [report["run_id"]]


def test_a_chunk_run_twice_is_not_sent_twice(app_env, stand_ins, storage, unique):
    from shared.engine import export_chunk

    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    report = run_export(export_for("campaign_monitor", unique, path), connection_of(stand_ins, "campaign_monitor"))
    requests_before = len(stand_ins.campaign_monitor.log)
    again = export_chunk({"export": report["export"], "run_id": report["run_id"], "chunk": 0, "abandon": None},
                         Services.current())
    assert len(stand_ins.campaign_monitor.log) == requests_before
    assert again["delivered"] == report["destination"]["delivered"]


def emails_only(unique: str, path: str) -> dict:
    return {**export_for("campaign_monitor", unique, path), "matching": {"email": "Email"}}


class _Forgetful(dict):
    """An in-process dedupe cache that keeps nothing: every plan part runs as if in another process."""

    def __setitem__(self, key, value):
        pass


@pytest.mark.parametrize("same_process", [True, False], ids=["same-process", "parts-in-other-processes"])
def test_a_plan_read_in_parts_finds_duplicates_across_its_parts(same_process, app_env, stand_ins, storage, unique,
                                                                 monkeypatch):
    from shared.engine import planning

    if not same_process:  # each part then reads the earlier rows again for their keys
        monkeypatch.setattr(planning, "_first_seen_cache", _Forgetful())
    monkeypatch.setenv("CHUNK_ROWS", "10")
    # 50 rows, so five chunks in five parts; the last ten repeat rows of the first chunk.
    emails = [f"p{i}@example.com" for i in range(40)] + [f"P{i}@Example.com" for i in range(10)]
    path = upload_segment(storage, f"{unique}/segment.csv", "Email\n" + "\n".join(emails) + "\n")
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"].update(batch_size=5)
    parts = []
    monkeypatch.setattr(function_app.engine, "plan_next_part", lambda task, services: parts.append(task) or
                        planning.plan_next_part(task, services))
    report = run_export(emails_only(unique, path), connection)

    assert report["status"] == "succeeded", report["error"]
    assert len(parts) == 4 and report["chunks"] == 5
    assert report["destination"]["delivered"] == 40
    assert report["destination"]["reasons"]["skipped"] == {"duplicate of an earlier row": 10}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {f"p{i}@example.com" for i in range(40)}
    assert_accounted(report)


def test_a_segment_replaced_between_plan_parts_fails_the_run_and_reports_what_was_sent(
        app_env, stand_ins, storage, unique, monkeypatch):
    from shared.engine import planning

    monkeypatch.setenv("CHUNK_ROWS", "10")
    text = "Email\n" + "\n".join(f"p{i}@example.com" for i in range(30)) + "\n"
    path = upload_segment(storage, f"{unique}/segment.csv", text)

    def replace_then_plan(task, services):
        upload_segment(storage, path, text + "late@example.com\n")  # upstream rewrote the file meanwhile
        return planning.plan_next_part(task, services)

    monkeypatch.setattr(function_app.engine, "plan_next_part", replace_then_plan)
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"].update(batch_size=5)
    report = run_export(emails_only(unique, path), connection)

    assert report["status"] == "failed", json.dumps(report)
    assert f"segment {path} changed or was removed while it was read" in report["error"]
    assert f"the rows before row 11 of {path} were planned and exported" in report["error"]
    assert report["destination"]["input_rows"] == 10 and report["destination"]["delivered"] == 10
    assert stand_ins.campaign_monitor.active(LIST_ID) == {f"p{i}@example.com" for i in range(10)}
    assert_accounted(report)


def test_a_running_run_reports_its_progress(app_env, stand_ins, storage, unique, monkeypatch):
    from shared.engine import progress

    monkeypatch.setenv("CHUNK_ROWS", "10")
    path = upload_segment(storage, f"{unique}/segment.csv",
                          "Email\n" + "\n".join(f"p{i}@example.com" for i in range(30)) + "\n")
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"].update(batch_size=5, parallel_chunks=1)
    seen = []

    def on_activity(name, input_, result):  # runs before the orchestrator hears of the chunk
        if name == "export_chunk" and not seen:
            seen.append(progress(input_["export"], input_["run_id"], Services.current()))

    report = run_export(emails_only(unique, path), connection, on_activity=on_activity)
    assert report["status"] == "succeeded"
    status = seen[0]
    assert status["status"] == "running" and status["chunks_done"] == 1
    assert isinstance(status["plan_complete"], bool)  # either: the plan may still be reading on meanwhile
    assert (status["delivered"], status["rejected"], status["skipped"]) == (10, 0, 0)


def test_a_running_run_counts_the_batches_confirmed_to_chunks_still_sending(
        app_env, stand_ins, storage, unique, monkeypatch):
    # Chunks sharing a slow limit all send until near the run's end: counting only finished
    # chunks, a watcher would see nothing delivered for most of the run.
    from shared.engine import progress, starting

    monkeypatch.setenv("CHUNK_ROWS", "10")
    monkeypatch.setenv("PROGRESS_INTERVAL_S", "0")  # a record per confirmed batch
    path = upload_segment(storage, f"{unique}/segment.csv",
                          "Email\n" + "\n".join(f"p{i}@example.com" for i in range(29)) + "\nnot-an-email\n")
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"].update(batch_size=5, parallel_chunks=1)
    export = emails_only(unique, path)
    report = run_export(export, connection)
    assert report["status"] == "succeeded"
    # The run as it was while its last chunk sent: no report, no result for that chunk yet,
    # its confirmed batches recorded.
    runs = storage.container("export-runs")
    prefix = f"{export['name']}/{report['run_id']}"
    runs.delete_blob(f"{prefix}/report.json")
    runs.delete_blob(f"{prefix}/chunks/000002.json")

    status = progress(export["name"], report["run_id"], Services.current())
    assert (status["status"], status["chunks"], status["chunks_done"], status["chunks_sending"]) == ("running", 3, 2, 1)
    assert status.keys() == starting("x", "y", None).keys()  # one shape, from its start to its end
    assert (status["rows_done"], status["delivered"], status["rejected"], status["skipped"]) == (30, 29, 1, 0)


def test_a_plan_part_that_fails_for_good_still_sends_what_was_planned_and_fails_the_run(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setenv("CHUNK_ROWS", "10")
    path = upload_segment(storage, f"{unique}/segment.csv",
                          "Email\n" + "\n".join(f"p{i}@example.com" for i in range(30)) + "\n")

    def unreachable(task, services):
        raise OSError("storage unreachable")

    monkeypatch.setattr(function_app.engine, "plan_next_part", unreachable)
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"].update(batch_size=5)
    report = run_export(emails_only(unique, path), connection)

    assert report["status"] == "failed"
    assert report["error"].startswith(f"planning stopped at row 11 of {path}: the rows before it were exported")
    assert report["destination"]["delivered"] == 10
    assert stand_ins.campaign_monitor.active(LIST_ID) == {f"p{i}@example.com" for i in range(10)}
    assert_accounted(report)


def test_a_chunk_whose_activity_fails_every_time_has_its_rows_rejected_and_listed(app_env, stand_ins, storage,
                                                                                   unique, monkeypatch):
    """Counted but not listed, its rows made the report and rejected.csv disagree."""
    monkeypatch.setenv("CHUNK_ROWS", "20")
    monkeypatch.setenv("LOCAL_WORKER_PROCESSES", "0")  # the failure is arranged in this process
    real = function_app.engine.export_chunk

    def failing(task, services):
        if task["chunk"] == 1 and not task.get("abandon"):
            raise ConnectionError("the host lost the instance")
        return real(task, services)

    monkeypatch.setattr(function_app.engine, "export_chunk", failing)
    path = upload_segment(storage, f"{unique}/segment.csv", segment_text())
    report = run_export(export_for("campaign_monitor", unique, path), small_batches(stand_ins, "campaign_monitor"))
    assert_accounted(report)
    destination = report["destination"]
    # Its own rows may have been sent before it failed (after its last progress record):
    # "not confirmed"; those of the chunks after it, abandoned without sending: "not sent".
    failure = "a chunk activity failed: the host lost the instance"
    not_confirmed = f"not confirmed (it may have been sent before its chunk activity failed): {failure}"
    not_sent = f"not sent: {failure}"
    assert destination["reasons"]["rejected"][not_confirmed] > 0 and destination["reasons"]["rejected"][not_sent] > 0
    text = storage.container("export-runs").download_blob(destination["rejected_rows_file"]).readall().decode()
    listed = list(csv.DictReader(io.StringIO(text)))
    assert len(listed) == destination["rejected"]
    for reason in (not_confirmed, not_sent):
        assert sum(row["reason"] == reason for row in listed) == destination["reasons"]["rejected"][reason]
    chunk = Services.current().runs.plan(report["export"], report["run_id"])["chunks"][1]
    assert {int(row["row"]) for row in listed if row["reason"] == not_confirmed} <= set(
        range(chunk["first_row"], chunk["first_row"] + chunk["rows"]))  # chunk 1's own rows only


def _planned_in_parts(stand_ins, storage, unique, monkeypatch):
    """A run of 60 rows planned in parts of 5 (its first part stored): (request, task, services)."""
    from shared.engine import plan_run
    from shared.engine.starts import run_request

    monkeypatch.setenv("CHUNK_ROWS", "5")
    path = upload_segment(storage, f"{unique}/segment.csv",
                          "Email\n" + "".join(f"p{i}@example.com\n" for i in range(60)))
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"]["batch_size"] = 5
    export = emails_only(unique, path)
    services = Services.current()
    request = run_request(export["name"], trigger="test", requested_by="test", export=export, connection=connection)
    plan_run(request, services)
    return request, {"export": export["name"], "run_id": request["run_id"]}, services


def test_a_first_plan_executed_again_late_does_not_take_the_plan_back(app_env, stand_ins, storage, unique,
                                                                      monkeypatch):
    """Activities run at least once: a second execution of the first part, which found no
    plan when it started and ends after the next part was stored, must not write its own
    plan (one part) over the stored one."""
    from shared.engine import plan_next_part, plan_run

    request, task, services = _planned_in_parts(stand_ins, storage, unique, monkeypatch)
    ahead = plan_next_part(task, services)  # part 2
    looks = [None]  # its look for a plan came before the first execution stored one
    stored_plan = services.runs.plan
    monkeypatch.setattr(services.runs, "plan", lambda *a, **k: looks.pop() if looks else stored_plan(*a, **k))
    late = plan_run(request, services)  # part 1 again, ending now
    stored = services.runs.plan(*task.values())
    assert stored["cursor"]["parts"] == 2 and len(stored["chunks"]) == ahead["chunks"]
    assert late["chunks"] == ahead["chunks"]  # it answers with the plan as stored


def test_a_plan_part_executed_again_late_does_not_take_the_plan_back(app_env, stand_ins, storage, unique,
                                                                     monkeypatch):
    """Activities run at least once: a second execution of a part that ends after the next
    part was stored must not write the plan of its own, earlier, cursor over it."""
    from shared.engine import plan_next_part

    _, task, services = _planned_in_parts(stand_ins, storage, unique, monkeypatch)
    stale = services.runs.plan_and_etag(*task.values())  # what a late execution of part 2 started from
    plan_next_part(task, services)  # part 2
    ahead = plan_next_part(task, services)  # part 3
    monkeypatch.setattr(services.runs, "plan_and_etag", lambda *_: stale)
    late = plan_next_part(task, services)  # part 2 again, ending now
    stored = services.runs.plan(*task.values())
    assert stored["cursor"]["parts"] == 3 and len(stored["chunks"]) == ahead["chunks"]
    assert late["chunks"] == ahead["chunks"]  # it answers with the plan as stored
