"""Bad input, one case per test: each gets a clear message and loses nothing.

Either the run fails before sending anything, with a message naming what to fix, or the
bad rows are rejected with their reason while every other row goes through, or the
destination fails with the vendor's reason and every row it did not take is reported.
"""

from __future__ import annotations

import json
import threading

import pytest

from runner import run_export
from sandbox.bundle import AUDIENCE_ID, LIST_ID
from sandbox.keyvault import KeyVaultStandIn
from tests.support import assert_accounted, connection_of, upload_segment


def export(type_: str, unique: str, path: str, **changes) -> dict:
    documents = {
        "snapchat": {"target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}},
        "braze": {"target": {"segment_id": "bad"}, "matching": {"email": "Email", "customer_id": "CustomerId"}},
        "omnisend": {"target": {"tag": "bad"}, "matching": {"email": "Email"}},
        "campaign_monitor": {"target": {"list_id": LIST_ID},
                             "matching": {"email": "Email", "attributes": {"Notes": "Notes"}}},
    }
    return {"name": f"bad-{type_.replace('_', '-')}-{unique}", "display_name": "bad input", "segments": [path],
            "connection": f"sandbox-{type_.replace('_', '-')}", **documents[type_], **changes}


def run(type_, unique, path, stand_ins, connection=None, **changes):
    report = run_export(export(type_, unique, path, **changes), connection or connection_of(stand_ins, type_))
    if report["status"] == "succeeded" or report["destination"]["input_rows"]:
        assert_accounted(report)
    return report


GOOD = "CustomerId,Email,Notes\nC1,ana@example.com,x\nC2,ben@example.com,y\n"


# -- the file --------------------------------------------------------------------------------

def test_an_empty_file_fails_the_run_naming_the_file_and_sends_nothing(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/empty.csv", "")
    report = run("omnisend", unique, path, stand_ins)
    assert (report["status"], report["error"]) == (
        "failed", f"segment {path} is empty: expected a header row and data rows")
    assert stand_ins.omnisend.log == []


def test_a_header_without_rows_fails_the_run_saying_there_is_no_data(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/header.csv", "CustomerId,Email,Notes\r\n")
    report = run("omnisend", unique, path, stand_ins)
    assert report["error"] == f"the export's segments hold no data rows (only a header): {path}"


def test_one_of_several_segments_with_only_a_header_is_a_warning(app_env, stand_ins, storage, unique):
    """The others are exported; the file with no rows (an upstream extract that broke off
    looks just like it) is named in the report, where it passed unremarked."""
    full = upload_segment(storage, f"{unique}/full.csv", GOOD)
    empty = upload_segment(storage, f"{unique}/new-this-week.csv", "CustomerId,Email,Notes\n")
    report = run("omnisend", unique, full, stand_ins, segments=[full, empty])
    assert (report["status"], report["destination"]["delivered"]) == ("succeeded", 2)
    assert report["destination"]["warnings"] == [
        f"segment {empty} holds no data rows (only a header): check that upstream wrote it completely"]


def test_consent_values_neither_yes_nor_no_are_counted_in_the_report(app_env, stand_ins, storage, unique):
    """"ja" or "Yes." is no answer Campaign Monitor can be told: the person's earlier
    answer stays (Unchanged, where a No overwrote it), and the report says how many rows."""
    cells = {"a": "yes", "b": "no", "c": "", "d": "ja", "e": "Yes."}
    path = upload_segment(storage, f"{unique}/consent.csv", "Email,Notes,Consent\n" + "".join(
        f"{who}-{unique}@example.com,x,{cell}\n" for who, cell in cells.items()))
    report = run("campaign_monitor", unique, path, stand_ins,
                 matching={"email": "Email", "consent": "Consent", "attributes": {"Notes": "Notes"}})
    assert report["destination"]["delivered"] == 5
    assert report["destination"]["warnings"] == ["2 row(s): consent value neither yes nor no, read as no answer: "
                                                 "ConsentToTrack Unchanged (what the person told Campaign Monitor "
                                                 "stays)"]
    held = stand_ins.campaign_monitor.state()["lists"][LIST_ID]
    assert {who: held[f"{who}-{unique}@example.com"]["ConsentToTrack"] for who in cells} == {
        "a": "Yes", "b": "No", "c": "Unchanged", "d": "Unchanged", "e": "Unchanged"}


def test_unclear_consent_is_counted_once_per_row_across_chunks_and_not_for_rows_refused(app_env, stand_ins, storage,
                                                                                       unique, monkeypatch):
    """Many chunks in one plan part share the destination that prepares their items: each
    chunk's entry holds its own count (not the running total), and a row refused for a
    field too long is not counted as given Campaign Monitor."""
    monkeypatch.setenv("CHUNK_ROWS", "5")
    rows = "".join(f"u{i}-{unique}@example.com,{'n' * 300 if i == 7 else 'x'},ja\n" for i in range(120))
    path = upload_segment(storage, f"{unique}/many.csv", "Email,Notes,Consent\n" + rows)
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"]["batch_size"] = 5
    report = run("campaign_monitor", unique, path, stand_ins, connection=connection,
                 matching={"email": "Email", "consent": "Consent", "attributes": {"Notes": "Notes"}})
    assert report["chunks"] == 24 and report["destination"]["delivered"] == 119
    assert report["destination"]["warnings"] == [
        "119 row(s): consent value neither yes nor no, read as no answer: ConsentToTrack Unchanged (what the "
        "person told Campaign Monitor stays)"]


def test_a_missing_mapped_column_fails_the_run_naming_it_and_the_columns_found(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/columns.csv", "Mail,Notes\nana@example.com,x\n")
    report = run("campaign_monitor", unique, path, stand_ins)
    assert report["status"] == "failed"
    assert report["error"] == (f'segment {path}: mapped column(s) "Email" not found; the file has "Mail", "Notes"')
    assert stand_ins.campaign_monitor.log == []


def test_a_row_that_is_not_utf8_is_rejected_and_the_others_delivered(app_env, stand_ins, storage, unique):
    data = GOOD.encode() + b"C3,cy@example.com,caf\xe9\n"
    path = upload_segment(storage, f"{unique}/latin1.csv", data)
    report = run("campaign_monitor", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {"row is not valid UTF-8": 1}
    assert report["destination"]["delivered"] == 2


def test_a_lone_carriage_return_ends_a_row_and_no_row_after_it_is_lost(app_env, stand_ins, storage, unique,
                                                                        monkeypatch):
    """csv ends a row at a lone CR; a chunk boundary that counted only LFs fell a row late,
    here at the file's end, and the last row was never read, counted or sent."""
    monkeypatch.setenv("CHUNK_ROWS", "3")
    connection = connection_of(stand_ins, "campaign_monitor")
    connection["settings"]["batch_size"] = 1
    emails = [f"{name}-{unique}@example.com" for name in "abc"]
    text = f"Email,Notes\n{emails[0]},x\ry\n{emails[1]},w\n{emails[2]},z\n"
    path = upload_segment(storage, f"{unique}/cr.csv", text)
    report = run("campaign_monitor", unique, path, stand_ins, connection=connection,
                 matching={"email": "Email", "attributes": {"Notes": "Notes"}})
    destination = report["destination"]
    assert destination["input_rows"] == 4  # "a,x", "y", b and c
    assert destination["reasons"]["rejected"] == {"row has 1 fields, the header has 2": 1}
    assert stand_ins.campaign_monitor.active(LIST_ID) >= set(emails)


def test_rows_with_too_many_or_too_few_fields_are_rejected_saying_how_many(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/fields.csv", GOOD + "C3,cy@example.com\nC4,d@example.com,z,extra\n")
    report = run("omnisend", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {"row has 2 fields, the header has 3": 1,
                                                          "row has 4 fields, the header has 3": 1}
    assert report["destination"]["delivered"] == 2


def test_a_value_longer_than_the_vendor_allows_is_rejected_before_sending(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/long.csv", GOOD + f"C3,cy@example.com,{'n' * 251}\n")
    report = run("campaign_monitor", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {"custom field Notes longer than 250 characters": 1}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"ana@example.com", "ben@example.com"}


def test_invalid_emails_are_rejected_each_with_its_reason(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/emails.csv",
                          GOOD + "C3,cy @example.com,z\nC4,d@@example.com,z\nC5,e@example,z\n")
    report = run("snapchat", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {
        "invalid email: contains whitespace": 1, "invalid email: more than one @": 1,
        "invalid email: malformed domain": 1}


def test_duplicate_rows_are_skipped_the_first_occurrence_wins_after_normalising(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/dups.csv", GOOD + "C1,ANA@example.com ,again\nC2,ben@example.com,y\n")
    report = run("braze", unique, path, stand_ins)
    assert report["destination"]["reasons"]["skipped"] == {"duplicate of an earlier row": 2}
    assert stand_ins.braze.members("segment_bad") == {"C1", "C2"}


def test_a_segment_that_does_not_exist_fails_the_run_naming_it(app_env, stand_ins, unique):
    report = run("omnisend", unique, f"{unique}/absent.csv", stand_ins)
    assert report["error"] == f"segment {unique}/absent.csv was not found in container segments"


# -- the definitions -------------------------------------------------------------------------

def test_an_export_naming_an_unknown_connection_fails_the_run_naming_it(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run_export({**export("braze", unique, path), "connection": "no-such-connection"}, None)
    assert report["status"] == "failed"
    assert 'connection: names an unknown connection "no-such-connection"' in report["error"]


def test_a_connection_without_recorded_consent_sends_nothing(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run("braze", unique, path, stand_ins, connection={**connection_of(stand_ins, "braze"), "consent": None})
    assert "has no recorded privacy consent" in report["error"]
    assert stand_ins.braze.log == []


# -- the credentials -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vault():
    with KeyVaultStandIn() as running:
        yield running


@pytest.fixture
def vault_env(vault, app_env, stand_ins, monkeypatch):
    """Credentials from the Key Vault stand-in, through the app's managed-identity path."""
    for name, credentials in stand_ins.credentials.items():
        vault.set_secret(name, json.dumps(credentials))
    monkeypatch.setenv("KEY_VAULT_URL", vault.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", vault.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", vault.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", vault.ca_path)
    return vault


def test_credentials_come_from_key_vault_through_the_managed_identity(vault_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run("braze", unique, path, stand_ins)
    assert report["status"] == "succeeded" and report["destination"]["delivered"] == 2


def test_a_key_vault_secret_that_does_not_exist_fails_the_destination_and_no_row_is_sent(
        vault_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    connection = {**connection_of(stand_ins, "braze"), "secret_name": "never-stored"}
    report = run("braze", unique, path, stand_ins, connection=connection)
    assert report["status"] == "failed"
    assert report["error"] == f"Braze: secret 'never-stored' was not found in {vault_env.url}"
    assert report["destination"]["reasons"]["rejected"] == {f"not sent: {report['error']}": 2}
    assert stand_ins.braze.log == []


def test_a_secret_lacking_a_field_fails_naming_the_field(vault_env, stand_ins, storage, unique):
    vault_env.set_secret("half-snapchat", json.dumps({"client_id": "x", "client_secret": "y"}))
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    connection = {**connection_of(stand_ins, "snapchat"), "secret_name": "half-snapchat"}
    report = run("snapchat", unique, path, stand_ins, connection=connection)
    assert report["error"] == "Snapchat: secret 'half-snapchat' lacks the field(s) refresh_token"


# -- the vendor ------------------------------------------------------------------------------

def test_a_wrong_api_key_fails_the_destination_without_the_key_and_later_chunks_send_nothing(
        app_env, stand_ins, storage, unique, monkeypatch):
    secrets = json.loads(app_env.read_text())
    secrets["sandbox-braze"]["api_key"] = "wrong-key-value"
    wrong = app_env.with_name("wrong.secrets.json")
    wrong.write_text(json.dumps(secrets))
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(wrong))
    monkeypatch.setenv("CHUNK_ROWS", "10")
    rows = "".join(f"G{i},g{i}@example.com,n\n" for i in range(40))
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD + rows)
    connection = connection_of(stand_ins, "braze")
    connection["settings"].update(batch_size=5, parallel_chunks=2)
    report = run("braze", unique, path, stand_ins, connection=connection)
    destination = report["destination"]
    assert report["status"] == "failed" and destination["error"].startswith("Braze refused the credentials (401)")
    assert "wrong-key-value" not in json.dumps(report)
    assert destination["delivered"] == 0 and destination["rejected"] == 42
    # Once a chunk reported the failure, later chunks were accounted without sending.
    assert len(stand_ins.braze.log) < report["chunks"]


def test_an_unknown_audience_fails_with_the_vendors_reason_for_every_row(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run("snapchat", unique, path, stand_ins, target={"audience_id": "missing-audience"})
    assert report["error"] == "Snapchat refused the request (404): Segment missing-audience not found"
    assert report["destination"]["reasons"]["rejected"] == {report["error"]: 2}


def test_an_unknown_list_fails_with_the_vendors_reason(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run("campaign_monitor", unique, path, stand_ins, target={"list_id": "missing-list"})
    assert report["error"] == "Campaign Monitor refused the request (404): Invalid ListID"


def test_a_vendor_400_for_a_whole_batch_fails_the_destination_with_its_reason(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setattr(stand_ins.braze, "max_batch", 1)  # a contract with a lower limit than configured
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    report = run("braze", unique, path, stand_ins)
    assert report["error"] == "Braze refused the request (400): Max Input Length Exceeded"
    assert report["destination"]["reasons"]["rejected"] == {report["error"]: 2}


def test_addresses_campaign_monitor_skips_as_suppressed_or_unsubscribed_are_rejected_with_its_code(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setattr(stand_ins.campaign_monitor, "suppressed", {"ana@example.com"})
    stand_ins.campaign_monitor.lists[LIST_ID]["ben@example.com"] = {
        "Name": "", "ConsentToTrack": "Unchanged", "CustomFields": {}, "State": "Unsubscribed"}
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD + "C3,cy@example.com,z\n")
    report = run("campaign_monitor", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {
        "Campaign Monitor: In Suppression List (code 204)": 1, "Campaign Monitor: Is Unsubscribed (code 206)": 1}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"cy@example.com"}


def test_contacts_of_an_omnisend_batch_that_ends_stopped_are_rejected_not_lost(
        app_env, stand_ins, storage, unique, monkeypatch):
    monkeypatch.setattr(stand_ins.omnisend, "stop_batches", True)
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD + "C3,cy@example.com,z\nC4,dee@example.com,z\n")
    report = run("omnisend", unique, path, stand_ins)
    assert report["destination"]["reasons"]["rejected"] == {
        "Omnisend stopped the batch before this contact was processed": 2}
    assert stand_ins.omnisend.tagged("bad") == {"ana@example.com", "ben@example.com"}


def test_a_failing_destination_does_not_stop_the_others(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", GOOD)
    reports = {}

    def go(type_, **changes):
        reports[type_] = run(type_, unique, path, stand_ins, **changes)

    threads = [threading.Thread(target=go, args=("snapchat",), kwargs={"target": {"audience_id": "missing"}}),
               threading.Thread(target=go, args=("omnisend",)), threading.Thread(target=go, args=("braze",))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reports["snapchat"]["status"] == "failed"
    assert reports["omnisend"]["status"] == reports["braze"]["status"] == "succeeded"
    assert stand_ins.omnisend.tagged("bad") == {"ana@example.com", "ben@example.com"}
