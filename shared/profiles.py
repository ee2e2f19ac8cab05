"""Profiles: how one segment row's identifiers are normalised, validated and hashed.

Every destination reads identifiers through these functions, so that "the same person"
means the same thing for deduplication, for the vendor and for the run report.
"""

from __future__ import annotations

import re
from itertools import repeat

from .columns import blank_positions, truthy_positions

try:  # CPython's own SHA-256: twice as fast as OpenSSL's for an address (no context set up per call)
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - other Pythons, or 3.12+ where it moved
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

__all__ = [
    "consent_answers",
    "email_keys",
    "email_problem",
    "is_sha256_hex",
    "normalise_email",
    "sha256_hexes",
]

# Pragmatic address syntax (the dot-atom form of RFC 5322 that mail providers accept):
# no quoted local parts, no IP-literal domains, no leading, trailing or doubled dots,
# a dotted domain whose last label is alphabetic (or an IDN "xn--" label).
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
# The lookaheads hold the length rules (local part at most 64, whole address at most 254).
_EMAIL = re.compile(rf"(?=[^@]{{1,64}}@)(?=.{{1,254}}$){_LOCAL}@(?:{_LABEL}\.)+{_TLD}")
# The same syntax for the lines of a block, once `email_keys` has checked the lengths (a
# label's 63 characters among them), written with possessive repeats: the separators
# ("." "@" "-") cannot belong to the runs they end, so nothing is ever given back, and
# the engine tries no alternatives: 0.57 µs an address where the pattern above took 0.8.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]++"
_EMAIL_LINES = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*+@(?:[a-z0-9]++(?:-++[a-z0-9]++)*+\.)++{_TLD}$", re.MULTILINE)
_LONG_LABEL = re.compile(r"[a-z0-9-]{64}")  # no shorter address than "a@" + 64 + ".co" can hold one
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONSENT_YES = frozenset({"yes", "y", "true", "1", "subscribed", "opt-in", "opted-in", "opted in", "consented"})
_CONSENT_NO = frozenset({"no", "n", "false", "0", "unsubscribed", "opt-out", "opted-out", "opted out", "declined",
                         "not consented", "nonsubscribed", "non-subscribed", "not subscribed"})


def normalise_email(value: str) -> str:
    """Trim and lowercase, as every destination and the Snapchat hashing rules expect."""
    return value.strip().lower()


def email_problem(email: str) -> str | None:
    """Return why a normalised address is not valid, or None when it is.

    The reasons are short and fixed so that the run report can group rows by them.
    """
    if _EMAIL.fullmatch(email):
        return None
    if len(email) > 254:
        return "invalid email: longer than 254 characters"
    if "@" not in email:
        return "invalid email: no @"
    if email.count("@") > 1:
        return "invalid email: more than one @"
    if any(c.isspace() for c in email):
        return "invalid email: contains whitespace"
    if not email.isascii():
        return "invalid email: non-ASCII characters"
    local, _, domain = email.partition("@")
    if not local:
        return "invalid email: nothing before @"
    if len(local) > 64:
        return "invalid email: local part longer than 64 characters"
    if not re.fullmatch(_LOCAL, local):
        return "invalid email: malformed local part"
    return "invalid email: malformed domain"


def email_keys(values: list[str]) -> tuple[list[str | None], dict[int, str]]:
    """Normalised emails of a block of raw values: None for a blank or invalid one.

    Returns (emails, {index: reason} for the invalid ones). This runs once per row of
    every segment, so the block is checked in one regular-expression pass over its lines
    (`_EMAIL_LINES` removes every valid line; what is left is invalid), with the length
    rules checked in C beforehand: a call and a match object per address, and the
    length lookaheads scanning each address twice, were most of the cost.
    """
    emails = list(map(str.lower, map(str.strip, values)))
    joined = "\n".join(emails)
    longest = max(map(len, emails), default=0)  # at most 64: no local part can be longer
    if (joined.count("\n") == len(emails) - 1 and longest <= 254
            and (longest <= 64 or max(map(str.find, emails, repeat("@"))) <= 64)
            and (longest < 69 or _LONG_LABEL.search(joined) is None)):
        invalid = truthy_positions(_EMAIL_LINES.sub("", joined).split("\n"))  # what is left of a line
    else:  # an address holding a line break, or too long: one at a time
        invalid = [index for index, email in enumerate(emails) if email and not _EMAIL.fullmatch(email)]
    reasons = {index: email_problem(emails[index]) for index in invalid}
    if not "".join(values).isascii():
        # The Kelvin sign (U+212A) lowercases to an ASCII "k": checked lowercased, an address
        # holding one passed as another person's. (Padding such as a no-break space is stripped.)
        for index, value in enumerate(values):
            if not value.strip().isascii() and emails[index].isascii() and index not in reasons:
                invalid.append(index)
                reasons[index] = "invalid email: non-ASCII characters"
    keys: list[str | None] = list(emails)
    for index in invalid + blank_positions(emails):
        keys[index] = None
    return keys, reasons


def is_sha256_hex(value: str) -> bool:
    """True for a value that is already a lowercase SHA-256 hex digest (never hash it twice)."""
    return len(value) == 64 and _SHA256_HEX.fullmatch(value) is not None


def sha256_hexes(emails: list[str | None]) -> list[str | None]:
    """SHA-256 hex of each checked email (`email_keys`), None staying None: a block at a time.

    A checked email holds an @, so it is never a digest already.
    """
    return [None if email is None else _sha256(email.encode("utf-8")).hexdigest() for email in emails]


def consent_answers(values: list[str]) -> list[str]:
    """A column of consent cells read as "yes" or "no" (explicit answers), "" (blank: no
    answer) or "?" (neither: a value not understood, "ja", "Yes.", which a destination must
    not take for an answer, and which the report counts)."""
    return ["yes" if value in _CONSENT_YES else "no" if value in _CONSENT_NO else "" if not value else "?"
            for value in map(str.lower, map(str.strip, values))]
