"""`make demo`: the whole product on this machine, checked against what should have happened.

Starts Azurite and the four vendor stand-ins, generates a segment of customers with the
flaws real segments have (invalid emails, duplicates, mixed case and stray whitespace,
missing values, a few addresses each vendor refuses), defines one export per destination,
runs them through the local runner (the Function App's own orchestrations), prints the
reports, and compares every audience the stand-ins hold with the members expected from
the generated data. Exits non-zero on any difference.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox.azurite import Azurite
from sandbox.bundle import AUDIENCE_ID, LIST_ID, Sandbox

__all__ = ["Segment", "generate_segment", "main"]

SEGMENT_PATH = "demo/customers.csv"
HEADER = ["CustomerId", "Email", "FirstName", "LastName", "Country", "City", "PostalCode", "EmailConsent"]
FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena"]
LAST = ["Silva", "Okafor", "Müller", "Nguyen", "Smith", "García", "Kowalski", "Haddad", "Tanaka", "Larsen"]
PLACES = [("PT", "Lisboa", "1100-148"), ("DE", "Berlin", "10115"), ("US", "Seattle", "98101"),
          ("FR", "Paris, 11e", "75011"), ("JP", "Tokyo", "100-0001")]
DOMAINS = ["example.com", "contoso.com", "fabrikam.net", "mail.example.org"]
INVALID = ["{n}.example.com", "{n} {m}@example.com", "{n}..{m}@example.com", "{n}@example", "@example.com",
           "{n}@exa mple.com", "{n}@@example.com"]


@dataclass
class Segment:
    """A generated segment and the truth about it."""

    csv_bytes: bytes
    rows: int
    valid_emails: set[str] = field(default_factory=set)  # normalised, of rows that can be sent
    braze_members: set[str] = field(default_factory=set)  # customer ids Braze should hold
    refused: set[str] = field(default_factory=set)  # valid addresses each vendor refuses
    consenting: set[str] = field(default_factory=set)  # valid addresses whose row says "yes" to email


def generate_segment(profiles: int, seed: int = 2026) -> Segment:
    """`profiles` rows: ~2% invalid emails, ~3% duplicate rows, ~10% odd case or whitespace,
    ~0.5% without email, ~0.3% without customer id, and 0.1% addresses the vendors refuse."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    segment = Segment(b"", profiles)
    people: list[tuple[str, str]] = []  # (customer id, normalised email) of complete, valid rows
    for i in range(profiles):
        if people and rng.random() < 0.03:  # the same person again, spelled differently
            customer_id, email = rng.choice(people)
            writer.writerow([customer_id, _spelled(email, rng, always=True), "", "", "", "", "", ""])
            continue
        first, last = rng.choice(FIRST), rng.choice(LAST)
        customer_id = f"C{i:08d}" if rng.random() >= 0.003 else ""
        country, city, postal = rng.choice(PLACES)
        draw = rng.random()
        if draw < 0.02:
            email = rng.choice(INVALID).format(n=f"{first.lower()}{i}", m=last.lower())
            valid = False
        elif draw < 0.025:
            email, valid = "", False
        else:
            email = f"{_ascii(first)}.{_ascii(last)}{i}@{rng.choice(DOMAINS)}"
            valid = True
        consent = rng.choice(["yes", "no", ""])
        writer.writerow([customer_id, _spelled(email, rng) if valid else email, first, last, country, city, postal,
                         consent])
        refused = valid and rng.random() < 0.001
        if valid:
            segment.valid_emails.add(email)
            if consent == "yes":
                segment.consenting.add(email)
            if refused:
                segment.refused.add(email)
        if customer_id and (valid or not email) and not refused:
            segment.braze_members.add(customer_id)
        if customer_id and valid:
            people.append((customer_id, email))
    segment.csv_bytes = out.getvalue().encode("utf-8")
    return segment


def _ascii(name: str) -> str:
    return name.lower().replace("é", "e").replace("ü", "u").replace("í", "i")


def _spelled(email: str, rng: random.Random, always: bool = False) -> str:
    if always or rng.random() < 0.1:
        email = rng.choice([email.upper(), email.title(), f"  {email} ", f"\t{email.capitalize()}"])
    return email


def exports_for(segment_path: str) -> list[dict[str, Any]]:
    """One export per destination over the demo segment."""
    matching = {"email": "Email", "customer_id": "CustomerId"}
    return [
        {"name": "demo-snapchat", "display_name": "Demo customers to Snapchat", "connection": "sandbox-snapchat",
         "segments": [segment_path], "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "email"}},
        {"name": "demo-braze", "display_name": "Demo customers to Braze", "connection": "sandbox-braze",
         "segments": [segment_path], "target": {"segment_id": "demo-customers"},
         "matching": {**matching, "attributes": {"first_name": "FirstName", "last_name": "LastName",
                                                 "country": "Country", "home_city": "City"}}},
        {"name": "demo-omnisend", "display_name": "Demo customers to Omnisend", "connection": "sandbox-omnisend",
         "segments": [segment_path], "target": {"tag": "demo-customers"},
         "matching": {"email": "Email", "consent": "EmailConsent",
                      "attributes": {"first_name": "FirstName", "last_name": "LastName", "country_code": "Country",
                                     "city": "City", "postal_code": "PostalCode"}}},
        {"name": "demo-campaign-monitor", "display_name": "Demo customers to Campaign Monitor",
         "connection": "sandbox-campaign-monitor", "segments": [segment_path], "target": {"list_id": LIST_ID},
         "matching": {"email": "Email", "attributes": {"name": "FirstName", "City": "City"}}},
    ]


def expected_audiences(segment: Segment) -> dict[str, set[str]]:
    """What each stand-in should hold after the demo, from the generated truth alone."""
    reachable = segment.valid_emails - segment.refused
    return {
        "snapchat": {hashlib.sha256(email.encode()).hexdigest() for email in segment.valid_emails},
        "braze": segment.braze_members,
        "omnisend": reachable,
        "campaign_monitor": reachable,
    }


def actual_audiences(sandbox: Sandbox) -> dict[str, set[str]]:
    return {
        "snapchat": set(sandbox.snapchat.audiences[AUDIENCE_ID]),
        "braze": sandbox.braze.members("segment_demo_customers"),
        "omnisend": sandbox.omnisend.tagged("demo-customers"),
        "campaign_monitor": sandbox.campaign_monitor.active(LIST_ID),
    }


def main(profiles: int = 50_000) -> int:
    from destinations import SPECS
    from runner.console import Progress, summary_table
    from runner.runs import run_export, run_status
    from runner.workers import local_workers
    from shared.config import parse_definitions
    from shared.state import Storage

    print(f"Demo: {profiles:,} generated profiles -> Snapchat, Braze, Omnisend, Campaign Monitor (local stand-ins)")
    segment = generate_segment(profiles)
    refused = sorted(segment.refused)
    with Azurite() as azurite, Sandbox(refuse_emails=refused, suppressed=refused) as sandbox, \
            tempfile.TemporaryDirectory(prefix="segment-export-demo-") as workdir:
        secrets_file = os.path.join(workdir, "local.secrets.json")
        sandbox.write_secrets(secrets_file)
        os.environ.update(AzureWebJobsStorage=azurite.connection_string, LOCAL_SECRETS_FILE=secrets_file,
                          ALLOW_LOCAL_ENDPOINTS="true")
        os.environ.pop("KEY_VAULT_URL", None)
        storage = Storage.from_connection_string(azurite.connection_string)
        storage.ensure_containers()
        storage.container("segments").upload_blob(SEGMENT_PATH, segment.csv_bytes, overwrite=True)
        print(f"Azurite on port {azurite.port}; segment uploaded to segments/{SEGMENT_PATH} "
              f"({len(segment.csv_bytes) / 1e6:.1f} MB)")
        definitions = {"connections": sandbox.connections(), "exports": exports_for(SEGMENT_PATH)}
        parse_definitions(definitions, SPECS, allow_local=True)  # the demo's own definitions must be valid
        store = storage.definitions(SPECS, allow_local=True)
        for document in definitions["connections"]:
            store.put_connection(document)
        for document in definitions["exports"]:
            store.put_export(document)
        connections = {c["name"]: c for c in definitions["connections"]}
        progress = Progress(poll=run_status)
        reports: dict[str, dict[str, Any]] = {}

        def run(export: dict[str, Any]) -> None:
            reports[export["name"]] = run_export(export, connections[export["connection"]], workers=workers,
                                                 on_activity=progress.track(export["name"]), trigger="demo")

        with local_workers() as workers:  # chunk activities in a worker process, as `cli.py run` has them
            threads = [threading.Thread(target=run, args=(export,)) for export in definitions["exports"]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        progress.close()
        ordered = [reports[e["name"]] for e in definitions["exports"] if e["name"] in reports]
        print()
        print(summary_table(ordered))
        return _verify(segment, sandbox, ordered)


def _verify(segment: Segment, sandbox: Sandbox, reports: list[dict[str, Any]]) -> int:
    expected, actual = expected_audiences(segment), actual_audiences(sandbox)
    print("\nAudiences held by the stand-ins, compared with the generated segment:")
    failures = 0
    for destination, members in expected.items():
        held = actual[destination]
        missing, extra = members - held, held - members
        ok = not missing and not extra
        failures += not ok
        print(f"  {destination:<17} expected {len(members):>7,}  held {len(held):>7,}  "
              f"{'OK' if ok else f'DIFFERENT: {len(missing):,} missing, {len(extra):,} unexpected'}")
    subscribed = {email for email, contact in sandbox.omnisend.contacts.items()
                  if contact.get("status") == "subscribed"}
    consenting = segment.consenting - segment.refused
    ok = subscribed == consenting
    failures += not ok
    print(f"  {'omnisend consent':<17} expected {len(consenting):>7,}  subscribed {len(subscribed):>7,}  "
          f"{'OK: subscribed only where the consent column says yes' if ok else 'DIFFERENT'}")
    for report in reports:
        destination = report["destination"]
        if report["status"] != "succeeded" or not destination["accounting_ok"]:
            failures += 1
            print(f"  run {report['export']}: status {report['status']}, accounting ok: {destination['accounting_ok']}")
        if destination["input_rows"] != segment.rows:
            failures += 1
            print(f"  run {report['export']}: read {destination['input_rows']:,} rows, "
                  f"the segment has {segment.rows:,}")
    print("\nDemo " + ("passed: every valid profile reached its audience, every other row is accounted for."
                       if not failures else f"FAILED: {failures} difference(s)."))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
