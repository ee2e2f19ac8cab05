"""The command line: validate, run (through the local runner), and the demo end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import cli
from sandbox.bundle import AUDIENCE_ID
from tests.support import connection_of, upload_segment


def write_definitions(tmp_path, stand_ins, exports):
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps({"connections": stand_ins.connections(), "exports": exports}))
    return str(path)


def test_validate_lists_every_problem_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALLOW_LOCAL_ENDPOINTS", "false")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"connections": [{"name": "x", "type": "braze", "display_name": "X",
                                                 "secret_name": "x", "settings": {}}],
                                "exports": [{"name": "e", "display_name": "E", "connection": "x",
                                             "segments": ["a.csv"], "target": {}, "matching": {}}]}))
    assert cli.main(["validate", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    assert 'connection "x": settings.rest_endpoint: is required' in err
    assert 'export "e": matching.email: is required' in err
    # The export is checked against its connection's vendor although that connection is
    # invalid itself: one pass lists what a second would have found.
    assert 'export "e": target.segment_id: is required' in err
    assert 'export "e": matching.customer_id: is required for Braze' in err
    assert "unknown connection" not in err


def test_publish_stores_nothing_from_an_invalid_file_and_says_why(app_env, tmp_path, capsys, unique):
    from destinations import SPECS
    from shared.engine import Services

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"connections": [{"name": f"x-{unique}", "type": "braze", "display_name": "X",
                                                 "secret_name": "x", "settings": {}}], "exports": []}))
    assert cli.main(["publish", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f'connection "x-{unique}": settings.rest_endpoint: is required' in err and "Traceback" not in err
    store = Services.current().storage.definitions(SPECS, allow_local=True)
    assert f"x-{unique}" not in {document.get("name") for document in store.documents("connections")}


def test_publish_takes_a_file_of_exports_alone_on_connections_stored_before(app_env, stand_ins, tmp_path, capsys,
                                                                           unique):
    """Its exports were refused, their connections "unknown (known: none defined)"; the
    stored connection is checked with them, and not stored again."""
    from destinations import SPECS
    from shared.engine import Services

    connection = {**connection_of(stand_ins, "snapchat"), "name": f"snap-{unique}"}
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"connections": [connection], "exports": []}))
    assert cli.main(["publish", "--config", str(both)]) == 0
    export = {"name": f"e-{unique}", "display_name": "E", "connection": connection["name"], "segments": ["a.csv"],
              "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}}
    exports_only = tmp_path / "exports.json"
    exports_only.write_text(json.dumps({"exports": [export]}))
    assert cli.main(["publish", "--config", str(exports_only)]) == 0
    assert "stored 0 connection(s) and 1 export(s)" in capsys.readouterr().out
    store = Services.current().storage.definitions(SPECS, allow_local=True)
    assert store.export_document(export["name"]) == export
    bad = tmp_path / "bad.json"  # an export on a connection stored nowhere is still refused
    bad.write_text(json.dumps({"exports": [{**export, "connection": f"nope-{unique}"}]}))
    assert cli.main(["publish", "--config", str(bad)]) == 1
    assert f'names an unknown connection "nope-{unique}"' in capsys.readouterr().err


def test_publish_stamps_who_stored_a_consent_and_keeps_the_stamp_while_the_acceptance_is_unchanged(
        app_env, stand_ins, tmp_path, capsys, unique, monkeypatch):
    import getpass

    from destinations import SPECS
    from shared.engine import Services

    store = Services.current().storage.definitions(SPECS, allow_local=True)
    connection = {**connection_of(stand_ins, "braze"), "name": f"braze-{unique}"}
    connection["consent"] = {**connection["consent"], "recorded_by": "someone else", "recorded_at": "2001-01-01"}
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps({"connections": [connection], "exports": []}))
    monkeypatch.setattr(getpass, "getuser", lambda: "ops-ana")
    assert cli.main(["publish", "--config", str(path)]) == 0
    stamped = store.connection_document(connection["name"])["consent"]
    assert stamped["recorded_by"] == "ops-ana (cli.py publish)" and stamped["recorded_at"] > "2026"  # not the file's
    monkeypatch.setattr(getpass, "getuser", lambda: "ops-ben")
    connection["display_name"] = "renamed"  # a later edit of a setting is not a new acceptance
    path.write_text(json.dumps({"connections": [connection], "exports": []}))
    assert cli.main(["publish", "--config", str(path)]) == 0
    assert store.connection_document(connection["name"])["consent"] == stamped


def test_publish_lists_a_files_problems_without_reaching_storage(app_env, azurite, tmp_path, capsys, monkeypatch):
    """Validation first: with storage unreachable, an invalid file still gets its problems,
    not a connection error (and nothing is created before the file is known to be valid)."""
    gone = azurite.connection_string.replace(f"127.0.0.1:{azurite.port}", "127.0.0.1:1")
    assert gone != azurite.connection_string
    monkeypatch.setenv("AzureWebJobsStorage", gone)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"connections": [{"name": "x", "type": "braze", "display_name": "X",
                                                 "secret_name": "x", "settings": {}}], "exports": []}))
    assert cli.main(["publish", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert 'connection "x": settings.rest_endpoint: is required' in err and "Traceback" not in err


def test_a_definitions_file_that_is_not_json_or_missing_is_one_clear_problem(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"connections": [\n  {"name": "x",\n')
    assert cli.main(["validate", "--config", str(broken)]) == 1
    assert "definitions: (file): is not JSON: Expecting" in capsys.readouterr().err
    assert cli.main(["validate", "--config", str(tmp_path / "missing.json")]) == 1
    assert "definitions: (file): cannot be read: No such file or directory" in capsys.readouterr().err


def test_validate_accepts_the_example_and_warns_about_missing_consent(tmp_path, capsys):
    assert cli.main(["validate", "--config", "examples/exports.json"]) == 0
    out = capsys.readouterr().out
    assert "valid (4 connection(s), 5 export(s))" in out and "warning" not in out
    document = json.loads(Path("examples/exports.json").read_text())
    without = document["connections"][0]
    del without["consent"]
    unconsented = tmp_path / "unconsented.json"
    unconsented.write_text(json.dumps(document))
    assert cli.main(["validate", "--config", str(unconsented)]) == 0  # valid: it can be saved, not used
    assert (f'warning: connection "{without["name"]}" has no recorded privacy consent; its exports cannot run '
            "until it has") in capsys.readouterr().out


def test_run_exports_prints_the_summary_and_writes_the_report(app_env, stand_ins, storage, unique, tmp_path, capsys):
    path = upload_segment(storage, f"{unique}/c.csv", "Email\nana@example.com\nANA@example.com\nbad\n")
    export = {"name": f"cli-{unique}", "display_name": "CLI", "connection": "sandbox-snapchat", "segments": [path],
              "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}}
    config = write_definitions(tmp_path, stand_ins, [export])
    report_file = tmp_path / "report.json"
    assert cli.main(["run", "--config", config, "--export", export["name"], "--report", str(report_file)]) == 0
    printed = capsys.readouterr()
    out = printed.out
    assert f"cli-{unique}" in out and "succeeded" in out and "duplicate of an earlier row" in out
    report = json.loads(report_file.read_text())
    assert (report["destination"]["delivered"], report["destination"]["rejected"],
            report["destination"]["skipped"]) == (1, 1, 1)
    # Said as soon as the plan's first part is stored, before anything is sent: a run
    # killed later can be resumed without looking for its id in storage.
    announced = f"cli-{unique}: run {report['run_id']} (after an interruption, continue it with --resume"
    assert printed.err.splitlines()[0].startswith(announced)


def test_a_second_local_run_of_an_export_at_once_is_refused_and_sends_nothing(app_env, stand_ins, storage, unique,
                                                                             tmp_path, capsys):
    """Two local runs of one export at once (a scheduled job overlapping the one before)
    sent every row twice; the second is now refused, naming who holds the export."""
    from runner.holds import export_hold

    path = upload_segment(storage, f"{unique}/c.csv", "Email\nana@example.com\n")
    export = {"name": f"cli-{unique}", "display_name": "CLI", "connection": "sandbox-snapchat", "segments": [path],
              "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}}
    config = write_definitions(tmp_path, stand_ins, [export])
    sent_before = len(stand_ins.snapchat.requests("POST"))
    with export_hold(storage.container("export-runs"), export["name"]):  # the run going on
        assert cli.main(["run", "--config", config, "--export", export["name"]]) == 2
        said = capsys.readouterr().err
        assert f'export "cli-{unique}" is being run already, by ' in said and "(process " in said
    assert storage.runs.run_ids(export["name"]) == [] and len(stand_ins.snapchat.requests("POST")) == sent_before
    assert cli.main(["run", "--config", config, "--export", export["name"]]) == 0  # once it ended


def test_upload_then_run_then_report_on_this_machine(app_env, stand_ins, storage, unique, tmp_path, capsys,
                                                    monkeypatch):
    """The local walk-through with the CLI alone: put a segment in storage, run, read the report."""
    segment = tmp_path / "vip.csv"
    segment.write_text("Email\nana@example.com\nbad\n")
    assert cli.main(["upload", str(segment), "--segment", f"{unique}/vip.csv"]) == 0
    assert f"to segments/{unique}/vip.csv" in capsys.readouterr().out
    export = {"name": f"cli-{unique}", "display_name": "CLI", "connection": "sandbox-snapchat",
              "segments": [f"{unique}/vip.csv"], "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}}
    config = write_definitions(tmp_path, stand_ins, [export])
    assert cli.main(["report", "--export", export["name"]]) == 2
    assert f'export "cli-{unique}" has no runs yet' in capsys.readouterr().err
    assert cli.main(["run", "--config", config, "--export", export["name"]]) == 0
    capsys.readouterr()
    (run_id,) = storage.runs.run_ids(export["name"])
    assert cli.main(["report", "--export", export["name"]]) == 0  # the latest
    out = capsys.readouterr().out
    assert "succeeded" in out and "invalid email: no @" in out and f"{run_id}/report.json" in out
    assert cli.main(["report", "--export", export["name"], "--run", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["destination"]["delivered"] == 1
    assert cli.main(["report", "--export", export["name"], "--run", "../x"]) == 2
    assert f"its latest runs: {run_id}" in capsys.readouterr().err
    assert cli.main(["upload", str(tmp_path / "nope.csv"), "--segment", "x.csv"]) == 2
    for unusable in ("/abs.csv", "vip//a.csv", "../x.csv", "c\\d.csv", " "):  # no export could name them
        assert cli.main(["upload", str(segment), "--segment", unusable]) == 2
        assert "upload: --segment must be" in capsys.readouterr().err
    # A run that stopped moving (a local run killed, never resumed) stays "running": the report
    # says how to go on with it, unless a local run holds the export (it is moving).
    from runner.holds import export_hold

    storage.container("export-runs").delete_blob(f"{export['name']}/{run_id}/report.json")
    monkeypatch.setattr(cli, "STILL_S", -1.0)  # its files were written a moment ago: count that as long
    assert cli.main(["report", "--export", export["name"]]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["status"] == "running"
    assert f"--resume {run_id}" in printed.err
    with export_hold(storage.container("export-runs"), export["name"]):
        assert cli.main(["report", "--export", export["name"]]) == 0
        assert "--resume" not in capsys.readouterr().err
    # A run whose first part is not stored yet (being planned, or failed before): said as such.
    storage.container("export-runs").upload_blob(f"{export['name']}/29990101T000000Z-abcdef/chunks/0.items", b"")
    assert cli.main(["report", "--export", export["name"], "--run", "29990101T000000Z-abcdef"]) == 2
    assert "it has no plan yet" in capsys.readouterr().err


def test_of_two_runs_taking_over_a_killed_runs_hold_at_once_one_runs(storage, unique, monkeypatch):
    """A run killed on this machine is taken over at once (its process is gone); two runs
    doing so together (a scheduled run and a --resume) both broke its lease and both ran."""
    import socket
    import subprocess
    import sys
    import threading

    from runner import holds

    monkeypatch.setattr(holds, "NAMING_S", 0.2)
    container = storage.container("export-runs")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # its pid names no process now
    blob = container.get_blob_client(f"k-{unique}/local-run.lock")
    blob.upload_blob(b"", overwrite=True)
    lease = blob.acquire_lease(lease_duration=holds.LEASE_S)  # the killed run's, left held
    blob.set_blob_metadata({"holder": "the killed run", "host": socket.gethostname(),
                            "pid": str(killed.pid)}, lease=lease)
    outcomes, start = [], threading.Barrier(2)

    def take_over() -> None:
        start.wait()
        try:
            with holds.export_hold(container, f"k-{unique}"):
                outcomes.append("ran")
                time.sleep(0.5)
        except holds.RunInProgress as refused:
            outcomes.append(str(refused))

    runs = [threading.Thread(target=take_over) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(30)
    refused = [outcome for outcome in outcomes if outcome != "ran"]
    assert outcomes.count("ran") == 1 and len(refused) == 1, outcomes
    assert refused[0].startswith(f'export "k-{unique}" is being run already')


def test_the_hold_is_renewed_again_after_storage_could_not_be_reached(storage, unique, monkeypatch):
    """A renewal that cannot reach storage (a connection error, not an HTTP answer) ended
    the renewing thread: the lease then ran out under a run still going."""
    from azure.core.exceptions import ServiceRequestError
    from azure.storage.blob import BlobLeaseClient

    from runner import holds

    monkeypatch.setattr(holds, "RENEW_S", 0.05)
    renew, calls = BlobLeaseClient.renew, []

    def unreachable_at_first(self, **kwargs):
        calls.append(kwargs)
        if len(calls) <= 3:
            raise ServiceRequestError("Connection refused")
        return renew(self, **kwargs)

    monkeypatch.setattr(BlobLeaseClient, "renew", unreachable_at_first)
    container = storage.container("export-runs")
    with holds.export_hold(container, f"r-{unique}"):
        deadline = time.monotonic() + 5
        while len(calls) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(holds.RunInProgress), holds.export_hold(container, f"r-{unique}"):  # still held
            pass
    assert len(calls) >= 6 and all(call.get("retry_total") == 0 for call in calls)  # short attempts, again and again


def test_resuming_a_run_that_does_not_exist_starts_nothing(app_env, stand_ins, storage, unique, tmp_path, capsys):
    """A mistyped --resume id started a whole new run under that id, every row sent again."""
    path = upload_segment(storage, f"{unique}/c.csv", "Email\nana@example.com\n")
    export = {"name": f"cli-{unique}", "display_name": "CLI", "connection": "sandbox-snapchat", "segments": [path],
              "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}}
    config = write_definitions(tmp_path, stand_ins, [export])
    assert cli.main(["run", "--config", config, "--export", export["name"]]) == 0
    capsys.readouterr()
    (earlier,) = storage.runs.run_ids(export["name"])
    requests = len(stand_ins.snapchat.requests("POST"))
    for typo in ("20990101T000000Z-nope", "../other-export/x"):
        assert cli.main(["run", "--config", config, "--export", export["name"], "--resume", typo]) == 2
        assert (f'export "cli-{unique}" has no run "{typo}" to resume; its latest runs: {earlier}'
                in capsys.readouterr().err)
    assert storage.runs.run_ids(export["name"]) == [earlier]
    assert len(stand_ins.snapchat.requests("POST")) == requests


def test_run_of_an_unknown_export_names_the_defined_ones(app_env, stand_ins, tmp_path, capsys):
    config = write_definitions(tmp_path, stand_ins, [])
    assert cli.main(["run", "--config", config, "--export", "nope"]) == 2
    assert 'unknown export "nope" (defined: none)' in capsys.readouterr().err


def test_the_demo_verifies_every_audience_against_the_generated_segment(monkeypatch, capsys):
    for name in ("AzureWebJobsStorage", "LOCAL_SECRETS_FILE", "ALLOW_LOCAL_ENDPOINTS"):
        monkeypatch.setenv(name, "restored after the test")  # the demo sets its own
    assert cli.main(["demo", "--profiles", "3000"]) == 0
    out = capsys.readouterr().out
    assert out.count(" OK") == 5
    assert "Demo passed" in out


@pytest.mark.parametrize(("faults", "said"), [
    ('{"sever_error": 1.0}', "unknown fault setting(s) sever_error; known: throttle, server_error"),
    ("{server_error: 1}", "Expecting property name"),
    ('{"server_error": 5}', "server_error is a rate per request, from 0 to 1, not 5"),
    ('{"seed": 1.5}', "seed must be a whole number"),
    ('{"slow_s": Infinity}', "slow_s must be a finite number"),
    ('[0.1]', "faults must be a JSON object"),
])
def test_sandbox_faults_that_cannot_be_used_are_a_clear_error_not_a_traceback(faults, said, capsys):
    assert cli.main(["sandbox", "--faults", faults]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sandbox --faults: ") and said in err and "Traceback" not in err
