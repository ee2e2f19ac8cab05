"""Deduplication state: the first occurrence of a key wins, in a block, across blocks, past its expected size."""

from shared.engine.rows import FirstSeen


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
