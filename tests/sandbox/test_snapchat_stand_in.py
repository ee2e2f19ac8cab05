"""The Snapchat stand-in takes only what DESTINATIONS.md says Snap Audience Match takes.

It is the oracle of every Snapchat test and benchmark: one that took an unhashed email,
an uppercase digest or a duplicate would let the exporter's mistakes through.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from sandbox.snapchat import SnapchatStandIn

AUDIENCE = "aud-1"
OAUTH = {"client_id": "snap-client", "client_secret": "snap-secret-1", "refresh_token": "snap-refresh-1"}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def running():
    with SnapchatStandIn(**OAUTH, audience_ids=[AUDIENCE], rate_limited=False) as stand_in:
        yield stand_in


@pytest.fixture
def api(running):
    """One server for the module; each test starts from an empty audience and a fresh token."""
    running.reset()
    token = requests.post(f"{running.url}/login/oauth2/access_token", timeout=5,
                          data={"grant_type": "refresh_token", **OAUTH}).json()["access_token"]
    return running, token


def add(api, data, schema="EMAIL_SHA256") -> requests.Response:
    stand_in, token = api
    return requests.post(f"{stand_in.url}/v1/segments/{AUDIENCE}/users", timeout=10,
                         headers={"Authorization": f"Bearer {token}"},
                         json={"users": [{"schema": [schema], "data": data}]})


def test_lowercase_digests_in_lists_of_one_join_the_audience(api):
    hashes = [digest(f"p{n}@example.com") for n in range(3)]
    answer = add(api, [[value] for value in hashes])
    assert answer.status_code == 200 and answer.json()["request_status"] == "SUCCESS"
    assert answer.json()["users"][0]["user"]["number_uploaded_users"] == 3
    assert api[0].audiences[AUDIENCE] == set(hashes)


@pytest.mark.parametrize("bad", [
    "p1@example.com",  # not hashed
    digest("p1@example.com").upper(),  # uppercase hex
    digest("p1@example.com")[:63],  # too short
    digest("p1@example.com")[:63] + "g",  # not hex
    digest("p1@example.com")[:63] + "é",  # not ASCII
    ["nested"],  # not a string
    None,
])
def test_an_identifier_that_is_not_a_lowercase_sha256_digest_refuses_the_whole_batch(api, bad):
    answer = add(api, [[digest("p0@example.com")], [bad]])
    assert answer.status_code == 400 and answer.json()["error_code"] == "E2004"
    assert api[0].audiences[AUDIENCE] == set()


@pytest.mark.parametrize("row", [[], "flat-string", {"hash": "x"}])
def test_an_identifier_not_in_a_list_of_one_refuses_the_batch(api, row):
    good = digest("p0@example.com")
    answer = add(api, [[good], [good, good] if row == [] else row])
    assert answer.status_code == 400 and answer.json()["error_code"] == "E2004"


def test_duplicates_in_a_batch_refuse_it(api):
    value = digest("p0@example.com")
    answer = add(api, [[value], [value]])
    assert answer.status_code == 400 and answer.json()["error_code"] == "E2005"


def test_more_than_100000_identifiers_refuse_the_batch(api):
    answer = add(api, [[f"{n:064x}"] for n in range(100_001)])
    assert answer.status_code == 400 and answer.json()["error_code"] == "E2003"
    assert add(api, [[f"{n:064x}"] for n in range(100_000)]).status_code == 200


def test_an_unknown_schema_refuses_the_batch(api):
    answer = add(api, [[digest("p0@example.com")]], schema="EMAIL")
    assert answer.status_code == 400 and answer.json()["error_code"] == "E2002"


def test_the_expire_token_fault_spares_a_token_granted_within_a_second(running, monkeypatch):
    """Tokens expire mid-run, but no vendor refuses one it has just granted: the fault
    expiring that one too made a request fail after its one refresh, and the run with it."""
    import time

    from sandbox.server import FRESH_TOKEN_S, Faults

    running.reset()

    def grant() -> str:
        return requests.post(f"{running.url}/login/oauth2/access_token", timeout=5,
                             data={"grant_type": "refresh_token", **OAUTH}).json()["access_token"]

    old = grant()
    time.sleep(FRESH_TOKEN_S + 0.1)
    fresh = grant()
    monkeypatch.setattr(running, "faults", Faults(expire_token=1.0))
    assert add((running, fresh), [[digest("a@example.com")]]).status_code == 200
    assert add((running, old), [[digest("b@example.com")]]).status_code == 401
