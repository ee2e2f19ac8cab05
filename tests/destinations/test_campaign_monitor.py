"""Campaign Monitor: subscribers imported into the list, consent always set, no silent resubscribing."""

import base64
import json

import pytest

from destinations import AuthError, FatalError, RowRejected
from sandbox.bundle import LIST_ID
from shared.config import DefinitionError
from tests.support import send_rows

HEADER = ["Email", "Name", "Tier", "Consent"]
MATCHING = {"email": "Email", "attributes": {"name": "Name", "Tier": "Tier"}}


@pytest.fixture
def campaign_monitor(build):
    return build("campaign_monitor", {"list_id": LIST_ID}, MATCHING, HEADER)


def test_a_subscriber_has_name_custom_fields_and_consent_unchanged_by_default(campaign_monitor):
    assert json.loads(campaign_monitor.item("ana@example.com", ["ana@example.com", "Ana Silva", "gold", ""])) == {
        "EmailAddress": "ana@example.com", "Name": "Ana Silva", "ConsentToTrack": "Unchanged",
        "CustomFields": [{"Key": "Tier", "Value": "gold"}]}


def test_a_consent_column_sets_consent_to_track_per_row(build):
    cm = build("campaign_monitor", {"list_id": LIST_ID}, {**MATCHING, "consent": "Consent"}, HEADER)
    assert json.loads(cm.item("a@example.com", ["a@example.com", "", "", "yes"]))["ConsentToTrack"] == "Yes"
    assert json.loads(cm.item("b@example.com", ["b@example.com", "", "", "no"]))["ConsentToTrack"] == "No"
    # A blank cell says nothing: what the person told Campaign Monitor before is kept.
    assert json.loads(cm.item("c@example.com", ["c@example.com", "", "", " "]))["ConsentToTrack"] == "Unchanged"
    assert not cm.notes


@pytest.mark.parametrize("value", ["ja", "Yes.", "N/A", "✓"])
def test_a_consent_value_neither_yes_nor_no_is_no_answer_and_is_counted(build, value):
    """It was sent as No, overwriting a Yes the person had given Campaign Monitor."""
    cm = build("campaign_monitor", {"list_id": LIST_ID}, {**MATCHING, "consent": "Consent"}, HEADER)
    assert json.loads(cm.item("d@example.com", ["d@example.com", "", "", value]))["ConsentToTrack"] == "Unchanged"
    assert cm.notes == {"consent value neither yes nor no, read as no answer: ConsentToTrack Unchanged (what "
                        "the person told Campaign Monitor stays)": 1}


def test_consent_to_track_cannot_be_given_for_everyone_by_a_setting(build):
    with pytest.raises(DefinitionError, match="target.consent_to_track"):
        build("campaign_monitor", {"list_id": LIST_ID, "consent_to_track": "Yes"}, MATCHING, HEADER)


def test_a_custom_field_over_250_characters_is_refused_before_sending(campaign_monitor):
    with pytest.raises(RowRejected, match="custom field Tier longer than 250 characters"):
        json.loads(campaign_monitor.item("a@example.com", ["a@example.com", "", "x" * 251, ""]))


def test_an_import_of_1000_lands_in_the_list(campaign_monitor, stand_ins):
    rows = [(f"u{i}@example.com", [f"u{i}@example.com", "", "", ""]) for i in range(1000)]
    assert send_rows(campaign_monitor, rows) == {}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {f"u{i}@example.com" for i in range(1000)}


def test_suppressed_and_unsubscribed_addresses_are_reported_per_address(campaign_monitor, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.campaign_monitor, "suppressed", {"gone@example.com"})
    refused = send_rows(campaign_monitor, [(e, [e, "", "", ""]) for e in ("ok@example.com", "gone@example.com")])
    assert refused == {1: "Campaign Monitor: In Suppression List (code 204)"}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"ok@example.com"}


def test_people_who_unsubscribed_stay_unsubscribed_unless_the_export_says_resubscribe(build, stand_ins):
    stand_ins.campaign_monitor.lists[LIST_ID]["left@example.com"] = {
        "Name": "", "ConsentToTrack": "Unchanged", "CustomFields": {}, "State": "Unsubscribed"}
    cm = build("campaign_monitor", {"list_id": LIST_ID}, MATCHING, HEADER)
    refused = send_rows(cm, [("left@example.com", ["left@example.com", "", "", ""])])
    assert refused == {0: "Campaign Monitor: Is Unsubscribed (code 206)"}
    assert "left@example.com" not in stand_ins.campaign_monitor.active(LIST_ID)
    opted_back = build("campaign_monitor", {"list_id": LIST_ID, "resubscribe": True},
                       {**MATCHING, "consent": "Consent"}, HEADER)
    assert send_rows(opted_back, [("left@example.com", ["left@example.com", "", "", "yes"])]) == {}
    assert "left@example.com" in stand_ins.campaign_monitor.active(LIST_ID)


def test_resubscribing_re_adds_only_people_whose_consent_cell_says_yes(build, stand_ins):
    """Resubscribe is a flag of a whole import: one batch goes as two, by consent."""
    for email in ("yes@example.com", "no@example.com", "blank@example.com"):
        stand_ins.campaign_monitor.lists[LIST_ID][email] = {
            "Name": "", "ConsentToTrack": "Unchanged", "CustomFields": {}, "State": "Unsubscribed"}
    cm = build("campaign_monitor", {"list_id": LIST_ID, "resubscribe": True}, {**MATCHING, "consent": "Consent"},
               HEADER)
    rows = [(email, [email, "", "", consent]) for email, consent in
            (("no@example.com", "no"), ("yes@example.com", "yes"), ("blank@example.com", ""),
             ("new@example.com", "no"))]
    assert send_rows(cm, rows) == {0: "Campaign Monitor: Is Unsubscribed (code 206)",
                                   2: "Campaign Monitor: Is Unsubscribed (code 206)"}
    assert stand_ins.campaign_monitor.active(LIST_ID) >= {"yes@example.com", "new@example.com"}
    assert not stand_ins.campaign_monitor.active(LIST_ID) & {"no@example.com", "blank@example.com"}
    imports = stand_ins.campaign_monitor.requests("POST", r".*/import\.json")
    assert len(imports) == 2


def test_resubscribe_without_a_consent_column_is_refused_by_validation(build):
    with pytest.raises(DefinitionError, match="target.resubscribe: acts only on people whose consent column says yes"):
        build("campaign_monitor", {"list_id": LIST_ID, "resubscribe": True}, MATCHING, HEADER)


def test_an_unknown_list_fails_the_batch_with_the_vendor_message(build):
    cm = build("campaign_monitor", {"list_id": "nope"}, MATCHING, HEADER)
    with pytest.raises(FatalError, match=r"Campaign Monitor refused the request \(404\): Invalid ListID"):
        send_rows(cm, [("a@example.com", ["a@example.com", "", "", ""])])


def test_a_wrong_api_key_is_an_auth_error(build):
    cm = build("campaign_monitor", {"list_id": LIST_ID}, MATCHING, HEADER, credentials={"api_key": "bad-key-9"})
    with pytest.raises(AuthError) as caught:
        send_rows(cm, [("a@example.com", ["a@example.com", "", "", ""])])
    # The stand-in repeats the Authorization it refused (as Basic: the key base64-encoded).
    assert "bad-key-9" not in str(caught.value) and base64.b64encode(b"bad-key-9:x").decode() not in str(caught.value)
    assert "Invalid API Key" in str(caught.value)


def test_oauth_credentials_are_refreshed_after_an_expired_token(build, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.campaign_monitor, "refresh_token", "cm-refresh-token")
    monkeypatch.setattr(stand_ins.campaign_monitor, "tokens", {})
    cm = build("campaign_monitor", {"list_id": LIST_ID}, MATCHING, HEADER,
               credentials={"access_token": "given-access-token", "refresh_token": "cm-refresh-token"})
    assert send_rows(cm, [("a@example.com", ["a@example.com", "", "", ""])]) == {}
    stand_ins.campaign_monitor.expire_tokens()  # the next call meets 401 Code 121
    assert send_rows(cm, [("b@example.com", ["b@example.com", "", "", ""])]) == {}
    assert stand_ins.campaign_monitor.active(LIST_ID) == {"a@example.com", "b@example.com"}
    assert len(stand_ins.campaign_monitor.requests("POST", "/oauth/token")) == 2


def test_a_refused_oauth_refresh_fails_with_a_clear_message(build, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.campaign_monitor, "refresh_token", "the-real-one")
    cm = build("campaign_monitor", {"list_id": LIST_ID}, MATCHING, HEADER,
               credentials={"access_token": "x", "refresh_token": "revoked-refresh-token"})
    with pytest.raises(AuthError, match="Campaign Monitor refused to refresh the access token") as caught:
        send_rows(cm, [("a@example.com", ["a@example.com", "", "", ""])])
    assert "revoked-refresh-token" not in str(caught.value)
