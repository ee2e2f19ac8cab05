"""No credential value leaves Key Vault's path: a full run with known secrets, everything captured.

Four exports run, one of them with a wrong key so that error paths speak too. Captured:
every log record at DEBUG (ours, the Azure SDK's, urllib3's; a worker process's on its
stderr), every orchestration and activity input and output, every blob the runs wrote
(plans, checkpoints, progress records, rejected rows, reports), and everything printed,
by this process and by the worker process that sends the chunks (when there is one).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from urllib.parse import quote, quote_plus

import pytest

from runner import local_workers, run_export
from runner.demo import exports_for
from shared.settings import AppSettings
from shared.state import compression_of, decompressed
from tests.support import upload_segment


@pytest.mark.parametrize("workers", [0, 1], ids=["one process", "worker process"])
def test_no_secret_appears_in_logs_reports_orchestration_data_files_or_output(
        app_env, stand_ins, storage, unique, caplog, capfd, monkeypatch, workers):
    secrets = json.loads(app_env.read_text())
    secrets["sandbox-omnisend"]["api_key"] = "omnisend-wrong-key-4711"  # this export fails with a 401
    # This one's token grant is refused, its form echoed URL-encoded ("+/=" as %2B, %2F, %3D).
    secrets["sandbox-snapchat"]["refresh_token"] = "Wr0ng+refresh/token==4711"
    # A key pasted with its line end: read without it (sent with it, HTTP's refusal would quote it).
    pasted = {"api_key": secrets["sandbox-braze"]["api_key"] + "\n"}
    app_env.write_text(json.dumps({**secrets, "sandbox-braze": pasted}))
    caplog.set_level(logging.DEBUG)
    rows = "".join(f"C{i},p{i}@example.com,A,B,PT,Porto,4000,yes\n" for i in range(300))
    header = "CustomerId,Email,FirstName,LastName,Country,City,PostalCode,EmailConsent\n"
    path = upload_segment(storage, f"{unique}/s.csv", header + rows + "C9,not-an-email,A,B,PT,Porto,4000,no\n")
    connections = {c["name"]: c for c in stand_ins.connections()}
    captured: list = []
    reports = {}

    def record(function, task, result):
        captured.append({"function": function, "input": task, "output": result})

    def run(export):
        reports[export["name"]] = run_export(export, connections[export["connection"]], on_activity=record,
                                             workers=pool)

    exports = [{**export, "name": f"{export['name']}-{unique}"} for export in exports_for(path)]
    monkeypatch.setenv("LOCAL_WORKER_LOG_LEVEL", "DEBUG")  # a worker's log records go to its stderr, captured
    monkeypatch.setenv("LOCAL_WORKER_PROCESSES", str(workers))
    with local_workers() as pool:
        threads = [threading.Thread(target=run, args=(export,)) for export in exports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert reports[f"demo-omnisend-{unique}"]["status"] == "failed"  # the error paths were taken
    snapchat = reports[f"demo-snapchat-{unique}"]
    # Echoed and redacted (a boolean: a failing assertion must not print what it looked in).
    echoed_and_redacted = snapchat["status"] == "failed" and "refresh_token=[redacted]" in snapchat["error"]
    assert echoed_and_redacted
    assert sum(r["destination"]["delivered"] for r in reports.values()) == 2 * 300
    written = []
    runs = storage.container("export-runs")
    for export in exports:
        for blob in runs.list_blobs(name_starts_with=f"{export['name']}/"):
            data = runs.download_blob(blob.name).readall()
            if blob.name.endswith(".items"):  # prepared batches, stored compressed for most vendors
                plan = json.loads(runs.download_blob(blob.name.split("/chunks/")[0] + "/plan.json").readall())
                index = int(blob.name.rsplit("/", 1)[1].split(".")[0])
                compression = compression_of(plan["chunks"][index])
                data = b"".join(decompressed([data], compression)) if compression else data
            written.append(data.decode())
    assert len(written) > 4 * 3
    printed = capfd.readouterr()
    if workers:  # the worker's own records were captured, not just ours
        assert "worker " in printed.err and " DEBUG " in printed.err
    haystack = "\n".join([caplog.text, json.dumps(captured), json.dumps(reports), *written, *printed])
    # Labels, not values: a failing assertion must not print the secrets it found.
    values = {value: f"{name}.{field}" for name, credentials in secrets.items() for field, value in credentials.items()}
    values |= {token: "snapchat access token" for token in stand_ins.snapchat.tokens}
    cm_key = secrets["sandbox-campaign-monitor"]["api_key"]
    values[base64.b64encode(f"{cm_key}:x".encode()).decode()] = "campaign monitor basic auth header"
    storage_settings = AppSettings.from_env().storage_connection_string.split(";")
    account_key = dict(part.split("=", 1) for part in storage_settings if "=" in part)
    values[account_key["AccountKey"]] = "storage account key"
    # As written (logs, printed text), as JSON writes it (orchestration data, reports) and
    # URL-encoded (a form body echoed): a value holding a character JSON escapes or a URL
    # encodes would otherwise hide in those.
    forms = {form: label for value, label in values.items()
             for form in (value, json.dumps(value)[1:-1], quote_plus(value), quote(value, safe=""))}
    leaked = sorted({label for form, label in forms.items() if form in haystack})
    assert leaked == []
