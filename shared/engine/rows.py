"""How one segment row is classified before any destination sees it (shared by plan and chunks).

The plan and the chunk activities must agree on which rows are invalid, skipped and
duplicates; both call `classify`, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from destinations import Destination, RowRejected

IDENTIFIER_LABELS = {"email": "email", "customer_id": "customer id"}


class Verdict(NamedTuple):
    key: str | None  # the row's identity for the destination, when it can be sent
    skipped: str | None  # why the row is skipped (no identifier)
    rejected: str | None  # why the row is refused by our checks


def classify(fields: Sequence[str], width: int, utf8: bool, identifier_index: int, identifier: str,
             destination: type[Destination]) -> Verdict:
    """Check a row's shape and identifier; duplicates are decided by the caller from `key`."""
    if not utf8:
        return Verdict(None, None, "row is not valid UTF-8")
    if len(fields) != width:
        return Verdict(None, None, f"row has {len(fields)} fields, the header has {width}")
    value = fields[identifier_index]
    if not value.strip():
        return Verdict(None, f"missing {IDENTIFIER_LABELS[identifier]}", None)
    try:
        return Verdict(destination.identify(value), None, None)
    except RowRejected as refusal:
        return Verdict(None, None, refusal.reason)
