"""Nothing lost under faults: four exports at once through vendors that throttle, fail and drop.

Every request path of every stand-in answers 10% of requests with its throttling signal,
5% with a 500/503, and drops 2% of connections (half before, half after processing, so a
retry may resend a batch the vendor already applied); OAuth vendors also expire access
tokens mid-run. The vendors' documented rate limits are enforced as well. The stand-ins
run in their own process, as vendors do, so that when they timestamp a request they are
not waiting for the exporter's threads.
"""

from __future__ import annotations

import hashlib
import threading

import pytest

from runner import run_export
from runner.demo import exports_for
from sandbox.braze import BrazeStandIn
from sandbox.bundle import AUDIENCE_ID, LIST_ID
from sandbox.campaign_monitor import CampaignMonitorStandIn
from sandbox.omnisend import OmnisendStandIn
from sandbox.remote import RemoteSandbox
from sandbox.server import Faults
from tests.support import assert_accounted, upload_segment

PROFILES = 20_000
# Each stand-in draws its faults from its own generator, one draw sequence per request in
# arrival order; with this seed every kind of fault comes up within any stand-in's first
# 13 requests, so every stand-in surely meets them all, whatever the threads' timing.
FAULTS = Faults(throttle=0.10, server_error=0.05, drop_before=0.01, drop_after=0.01, expire_token=0.02, seed=1883)


@pytest.fixture(scope="module")
def faulty():
    with RemoteSandbox(rate_limited=True, faults=FAULTS) as running:
        yield running


def test_every_valid_profile_arrives_exactly_and_no_request_ignores_a_throttle_window(
        faulty, azurite, storage, unique, tmp_path, monkeypatch):
    secrets = tmp_path / "secrets.json"
    faulty.write_secrets(str(secrets))
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("ALLOW_LOCAL_ENDPOINTS", "true")
    monkeypatch.setenv("CHUNK_ROWS", "2000")
    lines = ["CustomerId,Email,FirstName,LastName,Country,City,PostalCode,EmailConsent"]
    emails = []
    for i in range(PROFILES):
        email = f"person{i}@example.com" if i % 50 else f"broken{i}.example.com"
        lines.append(f"C{i},{email.upper() if i % 7 == 0 else email},F,L,PT,Lisboa,1000,yes")
        if i % 50:
            emails.append(email)
    path = upload_segment(storage, f"{unique}/faulty.csv", "\n".join(lines) + "\n")
    connections = {c["name"]: c for c in faulty.connections()}
    connections["sandbox-snapchat"]["settings"]["batch_size"] = 1_000  # enough requests to meet the faults
    reports = {}

    def run(export):
        reports[export["connection"]] = run_export(export, connections[export["connection"]])

    threads = [threading.Thread(target=run, args=({**export, "name": f"{export['name']}-{unique}"},))
               for export in exports_for(path)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    valid = set(emails)
    control = {vendor: faulty.control(vendor) for vendor in faulty.urls}
    assert set(control["snapchat"]["state"]["audiences"][AUDIENCE_ID]) == {
        hashlib.sha256(e.encode()).hexdigest() for e in valid}
    assert BrazeStandIn.members_of(control["braze"]["state"], "segment_demo_customers") == {
        f"C{i}" for i in range(PROFILES) if i % 50}
    assert OmnisendStandIn.tagged_in(control["omnisend"]["state"], "demo-customers") == valid
    assert CampaignMonitorStandIn.active_in(control["campaign_monitor"]["state"], LIST_ID) == valid
    for name, report in reports.items():
        assert report["status"] == "succeeded", (name, report["error"])
        assert_accounted(report)
        destination = report["destination"]
        assert destination["delivered"] == len(valid) and destination["rejected"] == PROFILES - len(valid)
        assert destination["requests"].get("retries", 0) > 0, f"{name}: the faults were not exercised"
    for name, seen in control.items():
        assert {"throttle", "server_error", "drop_before", "drop_after"} <= set(seen["faults_injected"]), name
        assert seen["requests_in_throttle_window"] == 0, (name, seen["throttle_window_arrivals"])
