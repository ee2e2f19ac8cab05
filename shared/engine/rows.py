"""What becomes of each row before any request: its key, or why it is rejected or skipped.

Rows are classified a block at a time (`classify_block`), in list operations that run
mostly in C: this is done once per row of every segment, so it is the hot path. The
first occurrence of a key wins; later ones are skipped (`FirstSeen`).
"""

from __future__ import annotations

import math
from array import array

from destinations import Destination
from shared.segments import Block

__all__ = ["FirstSeen", "IDENTIFIER_LABELS", "classify_block"]

IDENTIFIER_LABELS = {"email": "email", "customer_id": "customer id"}
_BUCKET_BITS = 16
_BUCKETS = 1 << _BUCKET_BITS
_ENTRY = 6  # bytes stored per key: the fingerprint's 48 bits below the bucket index
_MASK = (1 << 64) - 1
_LOW = (1 << 48) - 1


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
    process): its top 16 bits choose one of 65,536 byte buckets, its other 48 bits are
    stored there, 6 bytes a key. Buckets are sized once from the expected number of keys,
    so they are not reallocated row after row (which fragments the heap and kept the
    memory of a ten-million-row plan growing well past its data). Ten million keys take
    about 75 MB, where a set of strings would take over a gigabyte. Two distinct keys
    share a fingerprint with probability about n²/2⁶⁵ (3·10⁻⁶ for ten million); the later
    one would then be skipped as a duplicate.
    """

    def __init__(self, expected_keys: int = 0) -> None:
        per_bucket = math.ceil(expected_keys * 1.25 / _BUCKETS) if expected_keys else 4
        self._buckets = [bytearray(per_bucket * _ENTRY) for _ in range(_BUCKETS)]
        self._used = array("I", [0]) * _BUCKETS  # bytes used in each bucket
        self.count = 0

    def first(self, keys: list[str | None]) -> list[bool]:
        """For each key: True the first time it is seen (None keys: False, not remembered)."""
        buckets, used, shift = self._buckets, self._used, 64 - _BUCKET_BITS
        firsts = []
        for key in keys:
            if key is None:
                firsts.append(False)
                continue
            fingerprint = hash(key) & _MASK
            index = fingerprint >> shift
            bucket, end = buckets[index], used[index]
            token = (fingerprint & _LOW).to_bytes(_ENTRY, "little")
            position = bucket.find(token, 0, end)
            while position > 0 and position % _ENTRY:  # a match straddling two entries is no match
                position = bucket.find(token, position + 1, end)
            if position >= 0:
                firsts.append(False)
                continue
            if end + _ENTRY > len(bucket):
                bucket.extend(bytes(max(len(bucket) // 2, 4 * _ENTRY)))
            bucket[end:end + _ENTRY] = token
            used[index] = end + _ENTRY
            self.count += 1
            firsts.append(True)
        return firsts
