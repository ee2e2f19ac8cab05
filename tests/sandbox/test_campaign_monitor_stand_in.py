"""The Campaign Monitor stand-in answers as DESTINATIONS.md says CM's API v3.3 does."""

from __future__ import annotations

import pytest
import requests

from sandbox.campaign_monitor import CampaignMonitorStandIn
from sandbox.server import Window

KEY = "cm-api-key-0123456789"
LIST = "a1b2c3d4e5"
OAUTH = {"access_token": "cm-access-1", "refresh_token": "cm-refresh-1"}


@pytest.fixture(scope="module")
def running():
    with CampaignMonitorStandIn(api_key=KEY, list_ids=[LIST], oauth=OAUTH, suppressed=["supp@example.com"],
                                unsubscribed={LIST: ["gone@example.com"]}, bounced=["bounce@example.com"]) as stand_in:
        yield stand_in


@pytest.fixture
def api(running):
    """One server for the module (stopping one takes half a second); each test starts from defaults."""
    yield running
    running.window, running.tokens = Window(10, 1.0), {OAUTH["access_token"]: True}
    requests.post(f"{running.url}/__sandbox__/faults", json={}, timeout=5)
    requests.post(f"{running.url}/__sandbox__/reset", timeout=5)


def subscriber(email: str, consent: str = "Unchanged", **fields) -> dict:
    return {"EmailAddress": email, "Name": "", "ConsentToTrack": consent, **fields}


def import_(api: CampaignMonitorStandIn, rows: list, list_id: str = LIST, resubscribe: bool = False,
            auth=(KEY, "x"), headers: dict | None = None) -> requests.Response:
    return requests.post(f"{api.url}/api/v3.3/subscribers/{list_id}/import.json", auth=auth, headers=headers,
                         json={"Subscribers": rows, "Resubscribe": resubscribe,
                               "QueueSubscriptionBasedAutoresponders": False,
                               "RestartSubscriptionBasedAutoresponders": False}, timeout=5)


def test_missing_or_wrong_credentials_are_401_without_echoing_them(api):
    missing = import_(api, [subscriber("a@example.com")], auth=None)
    wrong = import_(api, [subscriber("a@example.com")], auth=("wrong-key-123", "x"))
    assert (missing.status_code, missing.json()["Code"]) == (401, 50)
    assert (wrong.status_code, wrong.json()["Code"]) == (401, 100)
    assert "wrong-key-123" not in wrong.text and KEY not in wrong.text
    assert api.active(LIST) == set()


def test_expired_oauth_token_is_121_until_refreshed(api):
    bearer = {"Authorization": f"Bearer {OAUTH['access_token']}"}
    assert import_(api, [subscriber("a@example.com")], auth=None, headers=bearer).status_code == 201
    api.expire_tokens()
    expired = import_(api, [subscriber("b@example.com")], auth=None, headers=bearer)
    assert expired.status_code == 401 and expired.json() == {"Code": 121, "Message": "Expired OAuth Token"}
    granted = requests.post(f"{api.url}/oauth/token", timeout=5,
                            data={"grant_type": "refresh_token", "refresh_token": OAUTH["refresh_token"]}).json()
    assert set(granted) == {"access_token", "expires_in", "refresh_token"}
    renewed = {"Authorization": f"Bearer {granted['access_token']}"}
    assert import_(api, [subscriber("b@example.com")], auth=None, headers=renewed).status_code == 201


def test_wrong_refresh_token_is_invalid_grant(api):
    answer = requests.post(f"{api.url}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "nope"},
                           timeout=5)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_unknown_list_is_404_code_101(api):
    answer = import_(api, [subscriber("a@example.com")], list_id="nolist")
    assert answer.status_code == 404 and answer.json() == {"Code": 101, "Message": "Invalid ListID"}


def test_import_over_1000_subscribers_is_refused_with_code_209(api):
    answer = import_(api, [subscriber(f"c{i}@example.com") for i in range(1001)])
    assert answer.status_code == 400 and answer.json()["Code"] == 209
    assert api.active(LIST) == set()


def test_missing_consent_to_track_refuses_the_whole_import(api):
    answer = import_(api, [subscriber("a@example.com"), {"EmailAddress": "b@example.com", "Name": "B"}])
    assert answer.status_code == 400 and "ConsentToTrack" in answer.json()["Message"]
    assert api.active(LIST) == set()


def test_clean_import_is_201_with_counts_and_active_members(api):
    import_(api, [subscriber("old@example.com", "Yes")])
    answer = import_(api, [subscriber("old@example.com", CustomFields=[{"Key": "Tier", "Value": "gold"}]),
                           subscriber("new@example.com", "No", Name="New Person")])
    assert answer.status_code == 201
    assert answer.json() == {"TotalUniqueEmailsSubmitted": 2, "TotalExistingSubscribers": 1, "TotalNewSubscribers": 1,
                             "DuplicateEmailsInSubmission": [], "FailureDetails": []}
    members = api.state()["lists"][LIST]
    assert members["old@example.com"] == {"Name": "", "ConsentToTrack": "Yes", "CustomFields": {"Tier": "gold"},
                                          "State": "Active"}
    assert members["new@example.com"]["ConsentToTrack"] == "No"
    assert api.active(LIST) == {"old@example.com", "new@example.com"}


def test_unchanged_consent_is_stored_as_unchanged_for_a_new_subscriber(api):
    import_(api, [subscriber("a@example.com")])
    assert api.state()["lists"][LIST]["a@example.com"]["ConsentToTrack"] == "Unchanged"


def test_partial_failure_is_400_code_210_and_the_other_rows_are_imported(api):
    answer = import_(api, [subscriber("ok@example.com"), subscriber("not-an-address"), subscriber("supp@example.com"),
                           subscriber("gone@example.com"), subscriber("bounce@example.com"),
                           subscriber("long@example.com", CustomFields=[{"Key": "Note", "Value": "x" * 251}])])
    assert answer.status_code == 400
    body = answer.json()
    assert (body["Code"], body["Message"]) == (210, "Subscriber Import had some failures")
    assert [(failure["EmailAddress"], failure["Code"]) for failure in body["ResultData"]["FailureDetails"]] == [
        ("not-an-address", 1), ("supp@example.com", 204), ("gone@example.com", 206), ("bounce@example.com", 207),
        ("long@example.com", 1)]
    assert body["ResultData"]["TotalNewSubscribers"] == 1
    assert api.active(LIST) == {"ok@example.com"}
    assert api.state()["lists"][LIST]["gone@example.com"]["State"] == "Unsubscribed"


def test_resubscribe_brings_an_unsubscribed_address_back(api):
    assert import_(api, [subscriber("gone@example.com")], resubscribe=True).status_code == 201
    assert api.active(LIST) == {"gone@example.com"}


def test_duplicates_in_one_submission_are_listed_and_applied_once(api):
    answer = import_(api, [subscriber("a@example.com", Name="First"), subscriber("A@example.com", Name="Second")])
    assert answer.status_code == 201
    assert answer.json()["DuplicateEmailsInSubmission"] == ["A@example.com"]
    assert answer.json()["TotalUniqueEmailsSubmitted"] == 1
    assert api.state()["lists"][LIST]["a@example.com"]["Name"] == "First"


def test_delete_and_unsubscribe_remove_one_address_from_the_active_members(api):
    import_(api, [subscriber("a@example.com"), subscriber("b@example.com"), subscriber("c@example.com")])
    deleted = requests.delete(f"{api.url}/api/v3.3/subscribers/{LIST}.json", params={"email": "a@example.com"},
                              auth=(KEY, "x"), timeout=5)
    unsubscribed = requests.post(f"{api.url}/api/v3.3/subscribers/{LIST}/unsubscribe.json", auth=(KEY, "x"),
                                 json={"EmailAddress": "b@example.com"}, timeout=5)
    assert deleted.status_code == unsubscribed.status_code == 200
    assert api.active(LIST) == {"c@example.com"}
    states = {email: member["State"] for email, member in api.state()["lists"][LIST].items()}
    assert (states["a@example.com"], states["b@example.com"]) == ("Deleted", "Unsubscribed")
    again = import_(api, [subscriber("a@example.com"), subscriber("b@example.com")])
    assert [failure["Code"] for failure in again.json()["ResultData"]["FailureDetails"]] == [206]
    assert api.active(LIST) == {"a@example.com", "c@example.com"}


def test_removing_an_address_not_on_the_list_is_code_203(api):
    answer = requests.delete(f"{api.url}/api/v3.3/subscribers/{LIST}.json", params={"email": "x@example.com"},
                             auth=(KEY, "x"), timeout=5)
    assert answer.status_code == 400 and answer.json()["Code"] == 203


def test_exceeding_the_window_is_429_with_seconds_to_wait(api):
    api.window = Window(1, 60.0)
    import_(api, [subscriber("a@example.com")])
    throttled = import_(api, [subscriber("b@example.com")])
    assert throttled.status_code == 429 and throttled.json() == {"Code": 429, "Message": "Rate limit exceeded"}
    assert 1 <= int(throttled.headers["X-RateLimit-Reset"]) <= 60
    assert api.active(LIST) == {"a@example.com"}


def test_injected_server_error_is_a_5xx_in_cm_error_form(api):
    requests.post(f"{api.url}/__sandbox__/faults", json={"server_error": 1.0}, timeout=5)
    answer = import_(api, [subscriber("a@example.com")])
    assert answer.status_code in (500, 503) and set(answer.json()) == {"Code", "Message"}
    assert api.active(LIST) == set()
