"""Omnisend: contacts tagged through asynchronous batches, consent respected, per-item errors read back."""

import json

import pytest

from destinations import AuthError, FatalError, RowRejected
from destinations.base import Pending
from destinations.omnisend import Omnisend
from tests.support import send_rows

HEADER = ["Email", "First", "Country", "Consent", "Tier"]
MATCHING = {"email": "Email", "consent": "Consent",
            "attributes": {"first_name": "First", "country_code": "Country", "tier": "Tier"}}


@pytest.fixture
def omnisend(build):
    return build("omnisend", {"tag": "vip"}, MATCHING, HEADER)


def test_a_contact_is_tagged_and_subscribed_only_with_explicit_consent(omnisend):
    yes = json.loads(omnisend.item("ana@example.com", ["ana@example.com", "Ana", "PT", "yes", "gold"]))
    assert yes == {"identifiers": [{"type": "email", "id": "ana@example.com",
                                    "channels": {"email": {"status": "subscribed"}}}],
                   "tags": ["vip"], "firstName": "Ana", "countryCode": "PT", "customProperties": {"tier": "gold"}}
    for consent in ("", "no", "unknown"):
        contact = json.loads(omnisend.item("b@example.com", ["b@example.com", "", "", consent, ""]))
        assert contact["identifiers"][0]["channels"]["email"]["status"] == "nonSubscribed"
    # A value not understood is no yes, and the report counts it: the data may mean one.
    assert omnisend.notes == {"consent value neither yes nor no, read as no consent: nonSubscribed": 1}


def test_the_default_tag_is_the_export_name(build):
    omnisend = build("omnisend", {}, {"email": "Email"}, HEADER)
    assert omnisend.target["tag"] == "test-omnisend"


def test_identify_refuses_invalid_addresses():
    with pytest.raises(RowRejected):
        Omnisend.identify("ana@@example.com")


def test_a_batch_is_settled_from_the_batch_list_once_omnisend_finishes_it(omnisend, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.omnisend, "finish_after_polls", 2)
    assert send_rows(omnisend, [(f"u{i}@example.com", [f"u{i}@example.com", "", "", "", ""]) for i in range(100)]) == {}
    assert stand_ins.omnisend.tagged("vip") == {f"u{i}@example.com" for i in range(100)}
    assert len(stand_ins.omnisend.requests("GET", r"/api/batches")) == 3  # in progress twice, then finished
    assert stand_ins.omnisend.requests("GET", r"/api/batches/.+") == []  # no request per batch


def test_many_batches_are_settled_with_one_request(omnisend, stand_ins):
    pending = [omnisend.send([f"b{n}@example.com"], omnisend.encode_batch(
        [omnisend.item(f"b{n}@example.com", [f"b{n}@example.com", "", "", "", ""])]).encode()) for n in range(20)]
    assert omnisend.settle(pending) == [{}] * 20
    assert len(stand_ins.omnisend.requests("GET", r"/api/batches.*")) == 1


def test_per_item_errors_are_read_from_the_batch_items(omnisend, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.omnisend, "refuse_emails", {"blocked@example.com"})
    refused = send_rows(omnisend, [(e, [e, "", "", "", ""]) for e in ("ok@example.com", "blocked@example.com")])
    assert list(refused) == [1] and refused[1].startswith("Omnisend: ")
    assert stand_ins.omnisend.tagged("vip") == {"ok@example.com"}


def test_a_stopped_batch_reports_the_unprocessed_contacts(omnisend, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.omnisend, "stop_batches", True)
    refused = send_rows(omnisend, [(f"s{i}@example.com", [f"s{i}@example.com", "", "", "", ""]) for i in range(10)])
    assert set(refused) == set(range(5, 10))
    assert all(reason == "Omnisend stopped the batch before this contact was processed" for reason in refused.values())


def test_a_wrong_api_key_is_an_auth_error(build):
    omnisend = build("omnisend", {"tag": "vip"}, MATCHING, HEADER, credentials={"api_key": "nope-key"})
    with pytest.raises(AuthError) as caught:
        send_rows(omnisend, [("a@example.com", ["a@example.com", "", "", "", ""])])
    assert "nope-key" not in str(caught.value)


@pytest.mark.parametrize("following", ["https://collector.example.net/api/batches?offset=250",
                                       "//collector.example.net/api/batches?offset=250",
                                       "http://" + "127.0.0.1:1/api/batches?offset=250"])
def test_a_next_page_on_another_host_is_not_followed_with_the_api_key(omnisend, stand_ins, following,
                                                                      monkeypatch):
    """The batch list's `paging.next` is the vendor's text: followed to another host, the
    request would carry the API key there."""
    monkeypatch.setattr(stand_ins.omnisend, "paging_next", following)
    with pytest.raises(FatalError, match="another host"):
        omnisend.settle([Pending("b-1", ["a@example.com"])])
    assert [entry["path"] for entry in stand_ins.omnisend.requests("GET")] == ["/api/batches"]  # the first page only
