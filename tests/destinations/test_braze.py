"""Braze: users upserted by external_id with email, attributes and the membership attribute."""

import http.client
import json

import pytest

from destinations import AuthError, RowRejected
from destinations.braze import Braze, _every_item_refused
from shared.config import DefinitionError
from shared.http.transport import Response
from tests.support import send_rows

HEADER = ["CustomerId", "Email", "FirstName", "Tier"]
MATCHING = {"email": "Email", "customer_id": "CustomerId", "attributes": {"first_name": "FirstName", "tier": "Tier"}}


@pytest.fixture
def braze(build):
    return build("braze", {"segment_id": "vip"}, MATCHING, HEADER)


def test_a_user_carries_external_id_normalised_email_attributes_and_membership(braze):
    item = json.loads(braze.item(Braze.identify(" C1 "), ["C1", " Ana@Example.com ", "Ana", ""]))
    assert item == {"external_id": "C1", "email": "ana@example.com", "first_name": "Ana", "segment_vip": True}


def test_a_user_without_email_is_still_a_member_but_an_invalid_email_is_refused(braze):
    assert "email" not in json.loads(braze.item("C2", ["C2", "", "Ben", "gold"]))
    with pytest.raises(RowRejected, match="invalid email: no @"):
        braze.item("C3", ["C3", "not-an-email", "Cy", ""])


def test_a_batch_is_applied_and_membership_can_be_read_back(braze, stand_ins):
    rows = [(f"C{i}", [f"C{i}", f"user{i}@example.com", f"Name{i}", ""]) for i in range(75)]
    assert send_rows(braze, rows) == {}
    assert stand_ins.braze.members("segment_vip") == {f"C{i}" for i in range(75)}
    assert stand_ins.braze.users["C7"]["first_name"] == "Name7"


def test_per_user_refusals_come_back_by_index_with_brazes_reason(braze, stand_ins, monkeypatch):
    refused_email = "blocked@example.com"
    monkeypatch.setattr(stand_ins.braze, "refuse_emails", {refused_email})
    refused = send_rows(braze, [("C1", ["C1", "ok@example.com", "", ""]), ("C2", ["C2", refused_email, "", ""])])
    assert list(refused) == [1] and refused[1].startswith("Braze: ")
    assert stand_ins.braze.members("segment_vip") == {"C1"}


def test_a_batch_whose_every_user_is_refused_is_per_user_not_a_failed_request(braze, stand_ins, monkeypatch):
    monkeypatch.setattr(stand_ins.braze, "refuse_emails", {"x@example.com", "y@example.com"})
    refused = send_rows(braze, [("C1", ["C1", "x@example.com", "", ""]), ("C2", ["C2", "y@example.com", "", ""])])
    assert set(refused) == {0, 1}


def test_a_wrong_api_key_is_an_auth_error_without_the_key(build):
    braze = build("braze", {"segment_id": "vip"}, MATCHING, HEADER, credentials={"api_key": "wrong-key-1234"})
    with pytest.raises(AuthError) as caught:
        send_rows(braze, [("C1", ["C1", "a@example.com", "", ""])])
    assert "Braze refused the credentials (401)" in str(caught.value)
    assert "wrong-key-1234" not in str(caught.value)


@pytest.mark.parametrize("field", ["email_subscribe", "push_subscribe", "subscription_groups"])
def test_no_attribute_mapping_can_set_what_a_person_agreed_to(build, field):
    """Braze takes no consent column here: a mapped subscription state would opt people in
    (or undo an unsubscribe) on the strength of a segment column alone."""
    with pytest.raises(DefinitionError, match=f"matching.attributes.{field}: .* subscription state"):
        build("braze", {"segment_id": "vip"}, {**MATCHING, "attributes": {field: "Tier"}}, HEADER)


def test_a_400_that_does_not_refuse_every_user_by_index_fails_instead_of_counting_the_rest_delivered(braze):
    def answer(status: int, errors: list) -> Response:
        return Response(status, "", http.client.HTTPMessage(), json.dumps({"message": "x", "errors": errors}).encode())

    every = [{"type": "Invalid email address", "input_array": "attributes", "index": i} for i in range(2)]
    assert _every_item_refused(answer(400, every), 2)
    assert not _every_item_refused(answer(400, every[:1]), 2)  # one user unlisted: a bad request, not delivered
    assert not _every_item_refused(answer(400, []), 2) and not _every_item_refused(answer(201, every), 2)
    # Errors not of the attributes array are not read as refusals by `send` either.
    assert not _every_item_refused(answer(400, [{"type": "x", "index": i} for i in range(2)]), 2)
