"""The Omnisend stand-in answers as DESTINATIONS.md says Omnisend's API 2026-03-15 does."""

from __future__ import annotations

import re

import pytest
import requests

from sandbox.omnisend import OmnisendStandIn
from sandbox.server import Window

KEY = "omnisend-brand-key-0123456789"
HEADERS = {"Authorization": f"Omnisend-API-Key {KEY}", "Omnisend-Version": "2026-03-15"}


@pytest.fixture(scope="module")
def running():
    with OmnisendStandIn(api_key=KEY, refuse_emails=["blocked@example.com"]) as stand_in:
        yield stand_in


@pytest.fixture
def api(running):
    """One server for the module (stopping one takes half a second); each test starts from defaults."""
    yield running
    running.finish_after_polls, running.stop_batches = 0, False
    running.window, running.tag_window = Window(400, 60.0, sliding=True), Window(60, 60.0, sliding=True)
    requests.post(f"{running.url}/__sandbox__/faults", json={}, timeout=5)
    requests.post(f"{running.url}/__sandbox__/reset", timeout=5)


def contact(email: str, status: str = "nonSubscribed", **fields) -> dict:
    return {"identifiers": [{"type": "email", "id": email, "channels": {"email": {"status": status}}}], **fields}


def post_batch(api: OmnisendStandIn, items: list, headers: dict | None = None) -> requests.Response:
    return requests.post(f"{api.url}/api/batches", json={"method": "POST", "endpoint": "contacts", "items": items},
                         headers=HEADERS if headers is None else headers, timeout=5)


def get(api: OmnisendStandIn, path: str) -> requests.Response:
    return requests.get(f"{api.url}/api{path}", headers=HEADERS, timeout=5)


def remove_tags(api: OmnisendStandIn, emails: list, tags: list) -> requests.Response:
    return requests.delete(f"{api.url}/api/contacts/tags", json={"emails": emails, "tags": tags},
                           headers=HEADERS, timeout=5)


def test_wrong_key_is_a_401_problem_without_echoing_it(api):
    answer = post_batch(api, [contact("a@example.com")], {**HEADERS, "Authorization": "Omnisend-API-Key wrong-123"})
    assert answer.status_code == 401
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(answer.json()) and answer.json()["status"] == 401
    assert "wrong-123" not in answer.text and KEY not in answer.text
    assert api.contacts == {}


def test_missing_version_is_400_and_a_retired_version_is_410_gone(api):
    missing = post_batch(api, [contact("a@example.com")], {"Authorization": HEADERS["Authorization"]})
    retired = post_batch(api, [contact("a@example.com")], {**HEADERS, "Omnisend-Version": "2024-01-01"})
    assert missing.status_code == 400 and retired.status_code == 410
    assert retired.json()["title"] == "Gone" and "retired" in retired.json()["detail"]
    assert api.contacts == {}


@pytest.mark.parametrize("count", [0, 101])
def test_batch_outside_1_to_100_items_is_a_validation_problem(api, count):
    answer = post_batch(api, [contact(f"c{i}@example.com") for i in range(count)])
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "items"
    assert api.batches == {}


def test_batch_reports_finished_with_per_item_errors_and_upserts_the_valid_contacts(api):
    created = post_batch(api, [contact("ann@example.com", tags=["seg-vip"], firstName="Ann"),
                               contact("not-an-address", tags=["seg-vip"]),
                               contact("blocked@example.com", tags=["seg-vip"]),
                               contact("bo@example.com", status="subscribed", tags=["seg-vip"])])
    assert created.status_code == 201 and created.json()["totalCount"] == 4
    batch_id = created.json()["batchID"]
    assert re.fullmatch(r"[0-9a-f]{24}", batch_id)
    status = get(api, f"/batches/{batch_id}").json()
    assert (status["status"], status["finishedCount"], status["errorsCount"]) == ("finished", 4, 2)
    items = get(api, f"/batches/{batch_id}/items").json()
    assert [item["request"]["identifiers"][0]["id"] for item in items["errors"]] == ["not-an-address",
                                                                                    "blocked@example.com"]
    assert {(item["responseCode"], item["response"]["detail"]) for item in items["errors"]} == {(400, "invalid email")}
    assert [item["responseCode"] for item in items["responses"]] == [200, 200]
    assert all(re.fullmatch(r"[0-9a-f]{24}", item["itemID"]) for item in items["responses"] + items["errors"])
    assert api.tagged("seg-vip") == {"ann@example.com", "bo@example.com"}
    contacts = api.state()["contacts"]
    assert (contacts["ann@example.com"]["status"], contacts["ann@example.com"]["firstName"]) == ("nonSubscribed", "Ann")
    assert contacts["bo@example.com"]["status"] == "subscribed"


def test_contact_without_a_valid_channel_status_is_an_item_error(api):
    batch_id = post_batch(api, [contact("a@example.com", status="optedIn")]).json()["batchID"]
    assert get(api, f"/batches/{batch_id}").json()["errorsCount"] == 1
    assert api.contacts == {}


def test_batch_is_in_progress_for_the_configured_polls_and_lists_items_only_once_finished(api):
    api.finish_after_polls = 2
    batch_id = post_batch(api, [contact("a@example.com", tags=["t"])]).json()["batchID"]
    assert get(api, f"/batches/{batch_id}/items").json()["responses"] == []
    assert [get(api, f"/batches/{batch_id}").json()["status"] for _ in range(3)] == ["inProgress", "inProgress",
                                                                                    "finished"]
    assert len(get(api, f"/batches/{batch_id}/items").json()["responses"]) == 1


def test_stopped_batch_processes_only_its_first_half(api):
    api.stop_batches = True
    batch_id = post_batch(api, [contact(f"c{i}@example.com", tags=["t"]) for i in range(4)]).json()["batchID"]
    status = get(api, f"/batches/{batch_id}").json()
    assert (status["status"], status["totalCount"], status["finishedCount"]) == ("stopped", 4, 2)
    assert api.tagged("t") == {"c0@example.com", "c1@example.com"}


def test_unknown_batch_is_a_404_problem(api):
    answer = get(api, "/batches/0123456789abcdef01234567")
    assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/problem+json"


def test_upsert_merges_fields_and_adds_tags_without_removing_any(api):
    post_batch(api, [contact("a@example.com", tags=["old"], city="Oslo", customProperties={"tier": "gold"})])
    post_batch(api, [contact("A@example.com", tags=["new"], lastName="Lee", customProperties={"score": 3})])
    assert api.state()["contacts"]["a@example.com"] | {"contactID": None} == {
        "contactID": None, "tags": ["new", "old"], "status": "nonSubscribed", "city": "Oslo", "lastName": "Lee",
        "customProperties": {"tier": "gold", "score": 3}}


def test_tag_removal_is_202_and_ignores_unknown_emails(api):
    post_batch(api, [contact("a@example.com", tags=["seg", "keep"]), contact("b@example.com", tags=["seg"])])
    answer = remove_tags(api, ["a@example.com", "nobody@example.com"], ["seg"])
    assert answer.status_code == 202
    assert api.tagged("seg") == {"b@example.com"} and api.tagged("keep") == {"a@example.com"}


def test_tag_removal_of_more_than_250_emails_is_refused(api):
    answer = remove_tags(api, [f"c{i}@example.com" for i in range(251)], ["seg"])
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "emails"


def test_exceeding_the_window_is_a_429_problem_with_retry_after_seconds(api):
    api.window = Window(1, 60.0, sliding=True)
    assert get(api, "/batches/0123456789abcdef01234567").status_code == 404
    throttled = get(api, "/batches/0123456789abcdef01234567")
    assert throttled.status_code == 429 and throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["title"] == "Too Many Requests"
    assert isinstance(throttled.json()["retryAfter"], int) and 58 <= throttled.json()["retryAfter"] <= 60


def test_tag_removal_has_its_own_limit(api):
    api.tag_window = Window(1, 60.0, sliding=True)
    assert remove_tags(api, ["a@example.com"], ["seg"]).status_code == 202
    assert remove_tags(api, ["a@example.com"], ["seg"]).status_code == 429
    assert post_batch(api, [contact("a@example.com")]).status_code == 201


def test_injected_throttle_carries_the_wait_as_retry_after(api):
    requests.post(f"{api.url}/__sandbox__/faults", json={"throttle": 1.0, "throttle_wait_s": 2.5}, timeout=5)
    throttled = post_batch(api, [contact("a@example.com")])
    assert throttled.status_code == 429 and throttled.json()["retryAfter"] == 3
    assert api.contacts == {}
