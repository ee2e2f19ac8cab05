"""What becomes of each row before any request: its key, or why it is rejected or skipped.

Rows are classified a block at a time (`classify_block`), in list operations that run
mostly in C: this is done once per row of every segment, so it is the hot path. The
first occurrence of a key wins; later ones are skipped (`FirstSeen`).
"""

from __future__ import annotations

from destinations import Destination
from shared.segments import Block

__all__ = ["FirstSeen", "IDENTIFIER_LABELS", "classify_block"]

IDENTIFIER_LABELS = {"email": "email", "customer_id": "customer id"}
_BUCKET_BITS = 16
_MASK = (1 << 64) - 1


def classify_block(block: Block, width: int, key_index: int, identifier: str,
                   destination: type[Destination]) -> tuple[list[str | None], dict[int, tuple[str, str]]]:
    """Keys of the block's rows (None where a row cannot be sent) and the problem rows.

    Problems are {index: ("rejected" | "skipped", reason)}: rejected for a row of the wrong
    width, with bytes that are not UTF-8 or an invalid identifier; skipped for a row
    without identifier. Duplicates are decided by the caller, from the keys.
    """
    rows = block.rows
    values = [row[key_index] if len(row) == width else "" for row in rows]
    keys, reasons = destination.identify_all(values)
    problems: dict[int, tuple[str, str]] = {}
    for index in block.bad:
        keys[index] = None
        problems[index] = ("rejected", "row is not valid UTF-8")
    for index in [index for index, key in enumerate(keys) if key is None]:
        if index in problems:
            continue
        if len(rows[index]) != width:
            problems[index] = ("rejected", f"row has {len(rows[index])} fields, the header has {width}")
        elif index in reasons:
            problems[index] = ("rejected", reasons[index])
        else:
            problems[index] = ("skipped", f"missing {IDENTIFIER_LABELS[identifier]}")
    return keys, problems


class FirstSeen:
    """Remembers keys compactly, to tell a first occurrence from a repeat.

    A key is kept as a 64-bit fingerprint (Python's string hash, stable within a
    process) in one of 65,536 byte buckets: about 9 bytes a key, so ten million keys
    fit in under 100 MB where a set of strings would take over a gigabyte. Two distinct
    keys share a fingerprint with probability about n²/2⁶⁵ (3·10⁻⁶ for ten million);
    the later one would then be skipped as a duplicate.
    """

    def __init__(self) -> None:
        self._buckets = [bytearray() for _ in range(1 << _BUCKET_BITS)]
        self.count = 0

    def first(self, keys: list[str | None]) -> list[bool]:
        """For each key: True the first time it is seen (None keys: False, not remembered)."""
        buckets, shift = self._buckets, 64 - _BUCKET_BITS
        firsts = []
        for key in keys:
            if key is None:
                firsts.append(False)
                continue
            fingerprint = hash(key) & _MASK
            bucket = buckets[fingerprint >> shift]
            token = fingerprint.to_bytes(8, "little")
            position = bucket.find(token)
            while position > 0 and position % 8:  # a match straddling two entries is no match
                position = bucket.find(token, position + 1)
            if position < 0:
                bucket += token
                self.count += 1
                firsts.append(True)
            else:
                firsts.append(False)
        return firsts
