"""Snapchat: hashed emails added to the audience, OAuth refresh, whole-batch errors."""

import dataclasses
import hashlib
import time

import pytest
import requests

from destinations import AuthError, FatalError, RowRejected
from destinations.snapchat import Snapchat
from sandbox.bundle import AUDIENCE_ID
from sandbox.server import Window
from sandbox.snapchat import SnapchatStandIn
from shared.http import Pacer
from tests.support import send_rows

HEADER = ["Email"]


def digest(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def test_identify_normalises_then_hashes_and_keeps_existing_hashes():
    assert Snapchat.identify("  Ana@Example.COM ") == digest("ana@example.com")
    already = digest("ben@example.com")
    assert Snapchat.identify(already.upper()) == already
    with pytest.raises(RowRejected, match="invalid email: no @"):
        Snapchat.identify("not-an-email")


def test_a_batch_lands_in_the_audience_as_sha256_hashes(build, stand_ins):
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER)
    keys = [Snapchat.identify(f"user{i}@example.com") for i in range(500)]
    assert send_rows(snapchat, [(key, []) for key in keys]) == {}
    assert stand_ins.snapchat.audiences[AUDIENCE_ID] == set(keys)
    body = stand_ins.snapchat.requests("POST", r"/v1/segments/.*/users")
    assert len(body) == 1


def test_an_expired_access_token_is_refreshed_once_and_the_batch_goes_through(build, stand_ins):
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER)
    send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])
    grants = stand_ins.snapchat.token_grants
    stand_ins.snapchat.expire_tokens()
    send_rows(snapchat, [(Snapchat.identify("b@example.com"), [])])
    assert stand_ins.snapchat.token_grants == grants + 1
    assert len(stand_ins.snapchat.audiences[AUDIENCE_ID]) == 2


def test_a_wrong_refresh_token_fails_with_a_message_that_shows_no_secret(build, stand_ins):
    credentials = {**stand_ins.credentials["sandbox-snapchat"], "refresh_token": "revoked-token-value"}
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER, credentials=credentials)
    with pytest.raises(AuthError) as caught:
        send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])
    assert "Snapchat refused to refresh the access token" in str(caught.value)
    assert "revoked-token-value" not in str(caught.value)


def test_an_unknown_audience_fails_the_batch_with_snapchats_message(build):
    snapchat = build("snapchat", {"audience_id": "no-such-audience"}, {"email": "Email"}, HEADER)
    with pytest.raises(FatalError, match=r"Snapchat refused the request \(404\): Segment no-such-audience not found"):
        send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])


def test_a_small_audience_gets_the_targeting_warning():
    assert "about 1,000 matched users" in Snapchat.warnings(12)[0]
    assert Snapchat.warnings(5_000) == []


def test_an_access_token_is_refreshed_before_it_expires(build, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.snapchat, "token_lifetime_s", 1)  # refreshed after half its life
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER, name="short-lived")
    send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])
    grants = stand_ins.snapchat.token_grants
    time.sleep(0.6)
    send_rows(snapchat, [(Snapchat.identify("b@example.com"), [])])
    assert stand_ins.snapchat.token_grants == grants + 1
    assert [entry["status"] for entry in stand_ins.snapchat.requests("POST", r"/v1/.*")] == [200, 200]  # no 401


def test_the_token_grant_takes_no_turn_of_the_marketing_apis_rate_limit(build, stand_ins):
    # The grant is served by accounts.snapchat.com: the first batch leaves at once, not a slot later.
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER, name="paced")
    # A slot every ~half second, spaced: 2 a second, counted in half-second windows, has no burst.
    snapchat.http = dataclasses.replace(snapchat.http, pacer=Pacer(2, window_s=0.5))
    grants = stand_ins.snapchat.token_grants
    send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])
    assert stand_ins.snapchat.token_grants == grants + 1
    assert snapchat.http.stats.requests == 2  # the grant is still counted in the report
    assert snapchat.http.stats.waited_s < 0.1


def test_the_stand_in_counts_only_marketing_api_requests_against_the_limit():
    stand_in = SnapchatStandIn(client_id="id", client_secret="secret", refresh_token="refresh",
                               audience_ids=["a"]).start()
    stand_in.window = Window(10, 1.0, clock=lambda: 1_000.0)  # every request in the same one-second window
    try:
        form = {"grant_type": "refresh_token", "client_id": "id", "client_secret": "secret",
                "refresh_token": "refresh"}
        token = requests.post(f"{stand_in.url}/login/oauth2/access_token", data=form, timeout=5).json()["access_token"]
        body = {"users": [{"schema": ["EMAIL_SHA256"], "data": [[hashlib.sha256(b"a").hexdigest()]]}]}
        answers = [requests.post(f"{stand_in.url}/v1/segments/a/users", json=body, timeout=5,
                                 headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(11)]
    finally:
        stand_in.stop()
    assert answers == [200] * 10 + [429]


def test_a_success_whose_sub_request_failed_fails_the_batch(build, stand_ins, monkeypatch):
    """Snapchat's answer has a status for the request and one for its sub-request (the batch)."""
    snapchat = build("snapchat", {"audience_id": AUDIENCE_ID}, {"email": "Email"}, HEADER)
    monkeypatch.setattr(stand_ins.snapchat, "sub_request_error", "Segment is being deleted")
    with pytest.raises(FatalError, match="sub-request status is ERROR: Segment is being deleted"):
        send_rows(snapchat, [(Snapchat.identify("a@example.com"), [])])
    assert stand_ins.snapchat.requests("POST", r".*/users") and not stand_ins.snapchat.audiences[AUDIENCE_ID]
