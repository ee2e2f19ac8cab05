"""The Braze stand-in answers as DESTINATIONS.md says Braze's `/users/track` does."""

from __future__ import annotations

import time

import pytest
import requests

from sandbox.braze import BrazeStandIn
from sandbox.server import Window

KEY = "braze-rest-key-0123456789"


@pytest.fixture(scope="module")
def running():
    with BrazeStandIn(api_key=KEY, refuse_emails=["blocked@example.com"]) as stand_in:
        yield stand_in


@pytest.fixture
def api(running):
    """One server for the module (stopping one takes half a second); each test starts from defaults."""
    yield running
    running.max_batch, running.window = 75, Window(3000, 3.0)
    requests.post(f"{running.url}/__sandbox__/faults", json={}, timeout=5)
    requests.post(f"{running.url}/__sandbox__/reset", timeout=5)


def inject(api: BrazeStandIn, **faults: float) -> None:
    requests.post(f"{api.url}/__sandbox__/faults", json=faults, timeout=5).raise_for_status()


def track(api: BrazeStandIn, objects: list, key: str = KEY) -> requests.Response:
    return requests.post(f"{api.url}/users/track", json={"attributes": objects},
                         headers={"Authorization": f"Bearer {key}"}, timeout=5)


def test_wrong_or_missing_key_is_refused_without_echoing_it(api):
    wrong = track(api, [{"external_id": "c1"}], key="not-the-key-42")
    missing = requests.post(f"{api.url}/users/track", json={"attributes": [{"external_id": "c1"}]}, timeout=5)
    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["message"].startswith("Invalid API key")
    assert "not-the-key-42" not in wrong.text and KEY not in wrong.text
    assert api.users == {}


def test_batch_over_75_objects_is_refused_with_max_input_length(api):
    answer = track(api, [{"external_id": f"c{i}"} for i in range(76)])
    assert answer.status_code == 400
    assert answer.json()["message"] == "Max Input Length Exceeded"
    assert api.users == {}
    assert track(api, [{"external_id": f"c{i}"} for i in range(75)]).status_code == 201


def test_batch_limit_is_configurable_for_contracts_of_50(api):
    api.max_batch = 50
    assert track(api, [{"external_id": f"c{i}"} for i in range(51)]).json()["message"] == "Max Input Length Exceeded"


def test_refused_objects_are_reported_by_index_and_the_others_applied(api):
    answer = track(api, [
        {"external_id": "c1", "email": "ann@example.com", "vip": True},
        {"email": "no-id@example.com"},
        {"external_id": "c3", "email": "not-an-address"},
        {"external_id": "c4", "email": "Blocked@example.com"},
        {"external_id": "c5", "email": "bo@example.org", "vip": True},
    ])
    assert answer.status_code == 201
    assert answer.json() == {"message": "success", "attributes_processed": 2, "errors": [
        {"type": "'external_id' is required", "input_array": "attributes", "index": 1},
        {"type": "Invalid email address", "input_array": "attributes", "index": 2},
        {"type": "Invalid email address", "input_array": "attributes", "index": 3},
    ]}
    assert set(api.users) == {"c1", "c5"}


@pytest.mark.parametrize("email", ["a..b@example.com", ".a@example.com", "a.@example.com", "a@localhost",
                                   "a b@example.com", "a@@example.com", "@example.com", "a@example..com"])
def test_syntactically_invalid_email_is_refused(api, email):
    answer = track(api, [{"external_id": "ok"}, {"external_id": "c1", "email": email}])
    assert answer.json()["errors"] == [{"type": "Invalid email address", "input_array": "attributes", "index": 1}]


def test_batch_without_a_valid_object_is_400_with_the_reasons(api):
    answer = track(api, [{"email": "a@example.com"}, {"external_id": ""}])
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("Valid data must be provided")
    assert [error["index"] for error in answer.json()["errors"]] == [0, 1]


def test_upserts_merge_attributes_and_null_removes_one(api):
    track(api, [{"external_id": "c1", "email": "ann@example.com", "first_name": "Ann", "seg_vip": True},
                {"external_id": "c2", "seg_vip": True}])
    track(api, [{"external_id": "c1", "first_name": None, "seg_vip": False, "city": "Oslo"}])
    assert api.state() == {"users": {"c1": {"email": "ann@example.com", "seg_vip": False, "city": "Oslo"},
                                     "c2": {"seg_vip": True}}}
    assert api.members("seg_vip") == {"c2"}


def test_array_attributes_take_add_and_remove(api):
    track(api, [{"external_id": "c1", "audiences": {"add": ["vip", "churn"]}}])
    track(api, [{"external_id": "c1", "audiences": {"add": ["new"], "remove": ["churn"]}}])
    assert api.users["c1"]["audiences"] == ["vip", "new"]


def test_every_answer_carries_the_rate_limit_headers(api):
    for answer in (track(api, [{"external_id": "c1"}]), track(api, [{"external_id": "c1"}], key="wrong")):
        assert answer.headers["X-RateLimit-Limit"] == "3000"
        assert int(answer.headers["X-RateLimit-Remaining"]) < 3000
        assert int(answer.headers["X-RateLimit-Reset"]) >= int(time.time())


def test_exceeding_the_window_is_429_with_reset_epoch_and_no_retry_after(api):
    api.window = Window(2, 60.0)
    statuses = [track(api, [{"external_id": "c1"}]).status_code for _ in range(2)]
    throttled = track(api, [{"external_id": "c1"}])
    assert statuses == [201, 201] and throttled.status_code == 429
    assert "Retry-After" not in throttled.headers
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert time.time() < int(throttled.headers["X-RateLimit-Reset"]) <= time.time() + 61


def test_injected_throttle_announces_the_reset_as_epoch_seconds(api):
    inject(api, throttle=1.0, throttle_wait_s=5.0)
    throttled = track(api, [{"external_id": "c1"}])
    assert throttled.status_code == 429
    assert time.time() + 3 < int(throttled.headers["X-RateLimit-Reset"]) <= time.time() + 7
    assert api.users == {}


def test_injected_server_error_is_a_5xx_with_a_message(api):
    inject(api, server_error=1.0)
    answer = track(api, [{"external_id": "c1"}])
    assert answer.status_code in (500, 503) and answer.json()["message"]
    assert api.users == {}


def test_a_request_at_the_announced_reset_second_is_not_counted_as_ignoring_the_throttle(monkeypatch):
    # The stand-in answers a little after the request arrived; Braze's 429 names the reset as
    # an epoch second rounded up. A client back at that second waited as told, even when it is
    # a few ms short of the stand-in's own wait after answering (CI failed on such a request).
    from sandbox.server import Faults, Request

    stand_in = BrazeStandIn(api_key=KEY, faults=Faults(throttle=1.0, throttle_wait_s=1.0), rate_limited=False)
    request = Request("POST", "/users/track", {}, {"authorization": f"Bearer {KEY}"}, b'{"attributes": []}')
    arrived = 1_000_000_000.9995
    monkeypatch.setattr(time, "time", lambda: arrived + 0.002)  # when the stand-in answers
    throttled, _ = stand_in._answer(request, arrived)
    reset = int(throttled.headers["X-RateLimit-Reset"])
    assert reset == 1_000_000_002
    stand_in.faults = Faults()
    stand_in._answer(request, float(reset))
    stand_in._answer(request, reset - 0.01)
    assert stand_in.requests_in_throttle_window == 1  # only the one before the named second


def test_faults_that_cannot_be_used_are_refused_with_a_reason_and_change_nothing(api):
    inject(api, throttle=0.5)
    for body, said in ((b'{"sever_error": 1}', "unknown fault setting(s) sever_error"),
                       (b'{"server_error": 2}', "server_error is a rate per request, from 0 to 1"),
                       (b"not json", "")):
        answer = requests.post(f"{api.url}/__sandbox__/faults", data=body, timeout=5)
        assert answer.status_code == 400 and said in answer.json()["message"]
    assert requests.get(f"{api.url}/__sandbox__/state", timeout=5).json()["faults"]["throttle"] == 0.5
