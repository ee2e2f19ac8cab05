"""What becomes of each row before any request: its key, or why it is rejected or skipped.

Rows are classified a block at a time (`classify_block`), in list operations that run
mostly in C: this is done once per row of every segment, so it is the hot path. The
first occurrence of a key wins; later ones are skipped (`first_seen.FirstSeen`).
"""

from __future__ import annotations

from destinations import Destination
from destinations.rows import Rows
from shared.columns import none_positions
from shared.segments import Block

__all__ = ["IDENTIFIER_LABELS", "classify_block"]

IDENTIFIER_LABELS = {"email": "email", "customer_id": "customer id"}


def classify_block(block: Block, width: int, key_index: int, identifier: str,
                   destination: type[Destination]) -> tuple[list[str | None], dict[int, tuple[str, str]]]:
    """Keys of the block's rows (None where a row cannot be sent) and the problem rows.

    Problems are {index: ("rejected" | "skipped", reason)}: rejected for a row of the wrong
    width, with bytes that are not UTF-8 or an invalid identifier; skipped for a row
    without identifier. Duplicates are decided by the caller, from the keys.
    """
    rows = block.rows
    # The identifier column, and its emails checked, are worked out once for the block: the
    # exports reading one segment at once share its blocks, and most of them are keyed by
    # the same email column (Snapchat, Omnisend, Campaign Monitor).
    columns = Rows(rows, width=width, memo=block.derived, lock=block.derived_lock)
    values = columns.values(key_index)
    if identifier == "email":
        keys, reasons = destination.keys_of_emails(values, *columns.checked_emails(key_index))
    else:
        keys, reasons = destination.identify_all(values)
    problems: dict[int, tuple[str, str]] = {}
    for index in block.bad:
        keys[index] = None
        problems[index] = ("rejected", "row is not valid UTF-8")
    for index in none_positions(keys):
        if index in problems:
            continue
        if len(rows[index]) != width:
            problems[index] = ("rejected", f"row has {len(rows[index])} fields, the header has {width}")
        elif index in reasons:
            problems[index] = ("rejected", reasons[index])
        else:
            problems[index] = ("skipped", f"missing {IDENTIFIER_LABELS[identifier]}")
    return keys, problems
