"""Identifiers: normalisation, validation and hashing that every destination relies on."""

import hashlib

import pytest

from destinations.snapchat import Snapchat
from shared.profiles import (
    consent_answers,
    email_keys,
    email_problem,
    is_sha256_hex,
    normalise_email,
    sha256_hexes,
)


def test_normalising_trims_and_lowercases():
    assert normalise_email("  Ana.Silva@Example.COM\t") == "ana.silva@example.com"


@pytest.mark.parametrize("email", [
    "ana@example.com", "ana.silva+vip@mail.example.org", "o'brien@example.ie", "x@sub.domain.co.uk",
    "user@xn--bcher-kva.example",
])
def test_common_addresses_are_valid(email):
    assert email_problem(email) is None


@pytest.mark.parametrize(("email", "reason"), [
    ("ana.example.com", "invalid email: no @"),
    ("ana@@example.com", "invalid email: more than one @"),
    ("ana silva@example.com", "invalid email: contains whitespace"),
    ("@example.com", "invalid email: nothing before @"),
    ("ana..silva@example.com", "invalid email: malformed local part"),
    (".ana@example.com", "invalid email: malformed local part"),
    ("ana@example", "invalid email: malformed domain"),
    ("ana@-example.com", "invalid email: malformed domain"),
    ("ana@example.c0m", "invalid email: malformed domain"),
    ("josé@example.com", "invalid email: non-ASCII characters"),
    ("a" * 65 + "@example.com", "invalid email: local part longer than 64 characters"),
    ("a@" + "b" * 250 + ".com", "invalid email: longer than 254 characters"),
])
def test_invalid_addresses_get_a_groupable_reason(email, reason):
    assert email_problem(email) == reason


TRICKY = ["ana@example.com", " Ana@Example.COM ", "", "   ", "ana.example.com", "ana@@example.com", "a b@example.com",
          "ana@example", "josé@example.com", "x@sub.domain.co.uk", "a" * 64 + "@example.com",
          "ana@exa\rmple.com", ".ana@example.com", "ana@-example.com", "o'brien@example.ie",
          "ana@example-.com", "ana@ex--am-ple.com", "ana.@example.com", "ana@example.com.", "ana@.example.com",
          "ana@xn--bcher-kva.xn--p1ai", "ana@example.xn--", "a.b.c@d.e.fg", "ana@example.c", "a@" + "b" * 63 + ".com"]
LONG = ["a" * 65 + "@example.com", "a@" + "b" * 250 + ".com", "a@" + "b" * 64 + ".com", "a@" + "b" * 246 + ".com"]


@pytest.mark.parametrize("extra", [[], ["ana\n@example.com"], LONG[:1], LONG[1:2], LONG[2:3], LONG[3:]],
                         ids=["lines", "newline", "long-local", "long-address", "long-label",
                              "long-label-in-a-short-enough-address"])
def test_a_block_of_addresses_is_checked_as_each_one_alone(extra):
    """The block check (one pass over the lines) and its fallbacks agree with the check of one address."""
    values = TRICKY + extra
    keys, reasons = email_keys(values)
    for index, value in enumerate(values):
        email = normalise_email(value)
        problem = email_problem(email) if email else None
        assert keys[index] == (email if email and problem is None else None), value
        assert reasons.get(index) == problem, value


def test_an_address_that_lowercases_to_another_persons_is_refused():
    """The Kelvin sign (U+212A) lowercases to ASCII "k": checked lowercased, "\u212aim@x.com"
    was delivered as kim@x.com, an address that was not in the segment."""
    keys, reasons = email_keys(["\u212aim@example.com", "kim@example.com", "zoë@example.com",
                                "ana@example.com\xa0", "\u3000ben@example.com"])  # padded by a spreadsheet: fine
    assert keys == [None, "kim@example.com", None, "ana@example.com", "ben@example.com"]
    assert reasons == {0: "invalid email: non-ASCII characters", 2: "invalid email: non-ASCII characters"}


def test_hash_is_lowercase_hex_sha256_of_the_normalised_value():
    assert sha256_hexes(["ana@example.com"]) == [hashlib.sha256(b"ana@example.com").hexdigest()]


def test_a_block_of_emails_hashes_as_each_alone_and_blanks_stay_blank():
    emails = ["ana@example.com", None, "zoë@example.com", "b@x.pt"]
    assert sha256_hexes(emails) == [hashlib.sha256(e.encode()).hexdigest() if e else None for e in emails]


def test_an_already_hashed_value_is_never_hashed_twice():
    digest = hashlib.sha256(b"ana@example.com").hexdigest()
    assert is_sha256_hex(digest)
    assert Snapchat.identify(digest) == digest  # what Snapchat's keys do with it
    assert not is_sha256_hex(digest.upper())  # normalise first: uppercase hex is lowercased by normalise_email


def test_consent_cells_read_as_an_answer_no_answer_or_not_understood():
    values = ["yes", " Opt-In ", "no", "FALSE", "0", "unsubscribed", "", "  ", "ja", "Yes.", "maybe"]
    assert consent_answers(values) == ["yes", "yes", "no", "no", "no", "no", "", "", "?", "?", "?"]


@pytest.mark.parametrize(("value", "given"), [
    ("yes", True), (" YES ", True), ("true", True), ("1", True), ("Subscribed", True), ("opt-in", True),
    ("no", False), ("", False), ("maybe", False), ("0", False), ("unsubscribed", False),
])
def test_only_an_explicit_yes_counts_as_consent(value, given):
    assert (consent_answers([value]) == ["yes"]) is given
