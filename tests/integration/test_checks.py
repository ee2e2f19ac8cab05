"""Checking an export before it runs: each thing a run would stop at is found and named
(definitions, consent, segments, credentials), nothing is sent, no secret is shown."""

from __future__ import annotations

import json

import cli
from sandbox.bundle import AUDIENCE_ID
from shared.engine import Services, check_export
from tests.support import connection_of, upload_segment


def _export(unique: str, segments: list[str], **changes) -> dict:
    return {"name": f"check-{unique}", "display_name": "check", "connection": "sandbox-snapchat",
            "segments": segments, "target": {"audience_id": AUDIENCE_ID}, "matching": {"email": "Email"}, **changes}


def _checked(export: dict, connection: dict | None) -> dict[str, tuple[bool, str]]:
    result = check_export(export, connection, Services.current())
    return {check["check"]: (check["ok"], check["detail"]) for check in result["checks"]}


def test_an_export_ready_to_run_passes_every_check_and_nothing_is_sent(app_env, stand_ins, storage, unique):
    path = upload_segment(storage, f"{unique}/ok.csv", "Email,Name\nana@example.com,Ana\n")
    sent_before = len(stand_ins.snapchat.log)
    result = check_export(_export(unique, [path]), connection_of(stand_ins, "snapchat"), Services.current())
    assert result["ok"] and [c["check"] for c in result["checks"]] == [
        "definitions", "consent", f"segment {path}", "credentials"]
    assert len(stand_ins.snapchat.log) == sent_before


def test_each_thing_a_run_would_stop_at_is_named(app_env, stand_ins, storage, unique):
    present = upload_segment(storage, f"{unique}/mail.csv", "Mail\nana@example.com\n")
    checked = _checked(_export(unique, [present, f"{unique}/absent.csv"]),
                       {**connection_of(stand_ins, "snapchat"), "consent": None, "secret_name": "never-stored"})
    assert checked["consent"] == (False, 'connection "sandbox-snapchat" has no recorded privacy consent '
                                         "(consent.accepted_by, consent.accepted_at)")
    assert checked[f"segment {present}"] == (
        False, f'segment {present}: mapped column(s) "Email" not found; the file has "Mail"')
    assert checked[f"segment {unique}/absent.csv"] == (
        False, f"segment {unique}/absent.csv was not found in container segments")
    assert checked["credentials"][0] is False and "'never-stored' was not found" in checked["credentials"][1]


def test_a_secret_lacking_a_field_is_named_by_its_field_never_its_values(app_env, stand_ins, storage, unique):
    secrets = json.loads(app_env.read_text())
    secrets["half"] = {"client_id": "cid-4711", "client_secret": "cs-4711"}
    app_env.write_text(json.dumps(secrets))
    path = upload_segment(storage, f"{unique}/ok.csv", "Email\nana@example.com\n")
    checked = _checked(_export(unique, [path]), {**connection_of(stand_ins, "snapchat"), "secret_name": "half"})
    assert checked["credentials"] == (False, "secret 'half' lacks the field(s) refresh_token")
    ready = _checked(_export(unique, [path]), connection_of(stand_ins, "snapchat"))["credentials"]
    assert ready == (True, "secret 'sandbox-snapchat' holds client_id, client_secret, refresh_token")
    assert "cs-4711" not in json.dumps(checked) + json.dumps(ready)


def test_a_segment_of_only_a_header_stops_the_check_when_every_segment_is_so(app_env, stand_ins, storage, unique):
    """The run stops when every segment holds only a header, and warns when one of several does."""
    header_only = upload_segment(storage, f"{unique}/header.csv", "Email,Name\r\n")
    rows = upload_segment(storage, f"{unique}/rows.csv", "Email,Name\nana@example.com,Ana\n")
    alone = _checked(_export(unique, [header_only]), connection_of(stand_ins, "snapchat"))
    assert alone[f"segment {header_only}"] == (False, "holds no data rows (only a header): the run would stop")
    beside = _checked(_export(unique, [header_only, rows]), connection_of(stand_ins, "snapchat"))
    assert beside[f"segment {header_only}"][0] is True and "the run will warn" in beside[f"segment {header_only}"][1]


def test_campaign_monitor_oauth_credentials_are_named_as_they_are(app_env, stand_ins, storage, unique):
    secrets = json.loads(app_env.read_text())
    secrets["cm-oauth"] = {"access_token": "at-4711", "refresh_token": "rt-4711"}
    app_env.write_text(json.dumps(secrets))
    path = upload_segment(storage, f"{unique}/ok.csv", "Email\nana@example.com\n")
    export = {**_export(unique, [path]), "connection": "sandbox-campaign-monitor", "target": {"list_id": "l"}}
    checked = _checked(export, {**connection_of(stand_ins, "campaign_monitor"), "secret_name": "cm-oauth"})
    assert checked["credentials"] == (True, "secret 'cm-oauth' holds access_token, refresh_token")


def test_definitions_that_do_not_validate_stop_the_check_there(app_env, stand_ins, unique):
    result = check_export(_export(unique, ["a.csv"], target={}), connection_of(stand_ins, "snapchat"),
                          Services.current())
    assert not result["ok"] and [c["check"] for c in result["checks"]] == ["definitions"]
    assert "target.audience_id" in result["checks"][0]["detail"]


def test_the_cli_checks_an_export_of_a_file_or_of_storage(app_env, stand_ins, storage, unique, tmp_path, capsys):
    path = upload_segment(storage, f"{unique}/ok.csv", "Email\nana@example.com\n")
    config = tmp_path / "definitions.json"
    config.write_text(json.dumps({"connections": stand_ins.connections(), "exports": [_export(unique, [path])]}))
    assert cli.main(["check", "--config", str(config), "--export", f"check-{unique}"]) == 0
    out = capsys.readouterr().out
    assert f"ok       segment {path}" in out and f"check-{unique}: ready to run" in out
    assert cli.main(["check", "--export", f"check-{unique}"]) == 2  # not stored
    assert f'unknown export "check-{unique}" in storage' in capsys.readouterr().err
    config.write_text(json.dumps({"connections": stand_ins.connections(),
                                  "exports": [_export(unique, [f"{unique}/absent.csv"])]}))
    assert cli.main(["check", "--config", str(config), "--export", f"check-{unique}"]) == 1
    assert "PROBLEM  segment" in capsys.readouterr().out


def test_the_http_route_checks_a_stored_export(app_env, stand_ins, storage, unique):
    from tests.integration.test_http_api import call, principal

    path = upload_segment(storage, f"{unique}/ok.csv", "Email\nana@example.com\n")
    store = Services.current().definitions
    store.put_connection(connection_of(stand_ins, "snapchat"))
    store.put_export(_export(unique, [path]))
    response = call("check_export", "POST", f"/api/exports/check-{unique}/check", {"name": f"check-{unique}"})
    assert response.status_code == 200 and json.loads(response.get_body())["ok"] is True
    missing = call("check_export", "POST", "/api/exports/nope/check", {"name": "nope"})
    assert missing.status_code == 404
    # Who may not run through the connection may not check through it either (its details
    # name the connection's secret and files).
    refused = call("check_export", "POST", f"/api/exports/check-{unique}/check", {"name": f"check-{unique}"},
                   headers=principal("viewer"))
    assert refused.status_code == 403
