"""What becomes of each row: its key or its problem (worked out once per block for all the
exports reading it), and the first occurrence of a key wins, in a block, across blocks,
past its expected size."""

import hashlib
import math

from destinations import destination_class, rows
from shared.engine.classify import classify_block
from shared.engine.first_seen import FirstSeen
from shared.segments import Block, FlatRows


def _block() -> Block:
    lines = [["Ana@Example.com", "x"], ["not-an-email", "x"], ["", "x"], ["ben@example.com"], ["ana@example.com", "y"]]
    return Block(first_row=1, rows=lines, start=0, end=100, data=b"")


def test_exports_keyed_by_the_same_email_column_check_a_block_once_and_get_keys_of_their_own(monkeypatch):
    checked = []
    email_keys = rows.email_keys
    monkeypatch.setattr(rows, "email_keys", lambda values: checked.append(values) or email_keys(values))
    block = _block()
    results = {type_: classify_block(block, 2, 0, "email", destination_class(type_))
               for type_ in ("campaign_monitor", "snapchat", "omnisend")}
    assert len(checked) == 1  # one check for the three exports
    width_problem = ("rejected", "row has 1 fields, the header has 2")
    for type_ in ("campaign_monitor", "omnisend"):
        keys, problems = results[type_]
        assert keys == ["ana@example.com", None, None, None, "ana@example.com"]
        assert problems[1][0] == "rejected" and problems[2] == ("skipped", "missing email")
        assert problems[3] == width_problem
    keys, problems = results["snapchat"]
    assert keys[0] == keys[4] == hashlib.sha256(b"ana@example.com").hexdigest()
    assert keys[1:4] == [None, None, None] and problems[3] == width_problem
    # One export's keys are its own: the shared check is not changed through them.
    results["omnisend"][0][0] = "changed"
    assert classify_block(block, 2, 0, "email", destination_class("campaign_monitor"))[0][0] == "ana@example.com"


def test_the_first_occurrence_wins_within_a_block_and_blank_keys_are_never_first():
    seen = FirstSeen(100)
    assert seen.first(["a", "b", "a", None, "c", "b", None]) == [True, True, False, False, True, False, False]
    assert seen.count == 3


def test_a_key_seen_in_an_earlier_block_is_a_repeat():
    seen = FirstSeen(100)
    seen.first(["a", "b"])
    assert seen.first(["c", "b", "a", "d", "c"]) == [True, False, False, True, False]
    assert seen.first([None, None]) == [False, False]


def test_more_keys_than_expected_are_all_remembered():
    seen = FirstSeen(10)
    keys = [f"person{n}@example.com" for n in range(20_000)]
    firsts = [first for start in range(0, len(keys), 3_000) for first in seen.first(keys[start:start + 3_000])]
    assert all(firsts) and seen.count == 20_000
    assert not any(seen.first(keys[::7]))
    assert seen.first(["someone.new@example.com"]) == [True]


def test_the_table_is_not_held_twice_for_an_estimate_up_to_a_tenth_short():
    # Growing holds the old table and the new one at once: for ten million keys, 235 MB.
    seen = FirstSeen(100_000)
    slots = len(seen._table)
    keys = [f"person{n}@example.com" for n in range(110_000)]  # 10% more than foretold
    assert all(first for start in range(0, len(keys), 5_000) for first in seen.first(keys[start:start + 5_000]))
    assert len(seen._table) == slots and not any(seen.first(keys[::11]))
    seen.first([f"more{n}@example.com" for n in range(5_000)])  # 11.5% more: grown now
    assert len(seen._table) > slots and seen.count == 115_000


class _Hashed(str):
    """A key with a chosen hash: 0 is the table's mark for a free slot."""

    def __new__(cls, value: str, hashed: int):
        key = super().__new__(cls, value)
        key.hashed = hashed
        return key

    def __hash__(self) -> int:
        return self.hashed


def test_a_key_whose_hash_is_zero_is_remembered_too():
    seen = FirstSeen(100)
    assert seen.first([_Hashed("zero", 0), _Hashed("minus one", -1)]) == [True, True]
    assert seen.first([_Hashed("zero", 0), _Hashed("minus one", -1)]) == [False, False]


def test_keys_whose_fingerprints_land_on_one_slot_are_all_remembered_and_found_again():
    """Each steps through the table by an amount of its own (double hashing): a table of
    prime size, so that every key's steps reach every slot, even nearly full."""
    seen = FirstSeen(0)
    capacity = len(seen._table)  # the least table: 1,031 slots
    keys = [_Hashed(f"key{n}", 5 + capacity * (n << 22)) for n in range(int(capacity * 0.9))]
    half = len(keys) // 2
    assert seen.first(keys[:half]) == [True] * half
    assert seen.first(keys[half:]) == [True] * (len(keys) - half)
    assert seen.count == len(keys) and len(seen._table) == capacity
    assert not any(seen.first(keys[:half])) and not any(seen.first(keys[half:]))
    seen.first([f"more{n}" for n in range(capacity)])  # grown
    for table in (seen._table, FirstSeen(123_457)._table):
        assert all(len(table) % divisor for divisor in range(2, math.isqrt(len(table)) + 1))


def test_rows_held_flat_of_another_width_than_the_header_are_each_rejected_for_it():
    # Every row of the block has 3 fields where the header has 2: no value is taken from them.
    block = Block(first_row=1, rows=FlatRows(["ana@example.com", "x", "y", "ben@example.com", "x", "y"], 3),
                  start=0, end=100, data=b"")
    keys, problems = classify_block(block, 2, 0, "email", destination_class("omnisend"))
    assert keys == [None, None]
    assert problems == {0: ("rejected", "row has 3 fields, the header has 2"),
                        1: ("rejected", "row has 3 fields, the header has 2")}
