"""Which keys a plan has seen: the first occurrence of a key wins, later ones are skipped.

Its own module because it needs numpy, which only a process that plans should load: a
worker process that only sends (`runner.workers`) is 16 MB smaller without it.
"""

from __future__ import annotations

import math

import numpy as np

from ..columns import present_positions

__all__ = ["FirstSeen"]


class FirstSeen:
    """Remembers keys compactly, to tell a first occurrence from a repeat.

    A key is kept as a 64-bit fingerprint (Python's string hash, stable within a
    process) in an open-addressing table (0 marks a free slot), looked up and inserted a
    block of keys at a time with numpy array operations: ~0.3 µs a key where a Python
    loop over byte buckets took 2.4. Probing is by double hashing (each fingerprint steps
    by an amount of its own through a table of prime size): at the table's 85% load,
    linear probing's runs of taken slots grew long, and each step of the longest keys
    in a block is one more pass of numpy operations. The table is sized once from the
    expected number of keys at 85% load, 9.4 bytes a key (94 MB for ten million, where a
    set of strings would take over a gigabyte), and grows by half if more keys come. Two
    distinct keys share a fingerprint with probability about n²/2⁶⁵ (3·10⁻⁶ for ten
    million); the later one would then be skipped as a duplicate.
    """

    def __init__(self, expected_keys: int = 0) -> None:
        self._table = np.zeros(_prime_at_least(max(_MIN_SLOTS, math.ceil(expected_keys / _LOAD))), np.uint64)
        self.count = 0

    def first(self, keys: list[str | None]) -> list[bool]:
        """For each key: True the first time it is seen (None keys: False, not remembered)."""
        present = present_positions(keys)
        if not present:
            return [False] * len(keys)
        if self.count + len(present) > _GROW_AT * len(self._table):
            self._grow(self.count + len(present))
        named = keys if len(present) == len(keys) else [keys[index] for index in present]
        fingerprints = np.fromiter(map(hash, named), np.int64, len(present)).view(np.uint64)
        fingerprints[fingerprints == 0] = 1  # 0 marks a free slot
        new = self._insert(fingerprints)
        self.count += int(np.count_nonzero(new))
        firsts = np.zeros(len(keys), bool)
        firsts[np.asarray(present)[new]] = True
        return firsts.tolist()

    def _insert(self, fingerprints: np.ndarray) -> np.ndarray:
        """Insert the fingerprints not yet held; True for those (a repeat within them: its first only)."""
        table, capacity = self._table, len(self._table)
        slots = (fingerprints % np.uint64(capacity)).astype(np.intp)
        # 1 to capacity - 1: coprime with the prime capacity, so a key's steps reach every slot.
        steps = (np.uint64(1) + (fingerprints >> np.uint64(32)) % np.uint64(capacity - 1)).astype(np.intp)
        new = np.zeros(len(fingerprints), bool)
        pending = np.arange(len(fingerprints))  # stays in key order: the first of equal keys wins a slot
        while pending.size:
            at = slots[pending]
            held = table[at]
            free = held == 0
            if free.any():  # one key per free slot; the others probe on
                candidates = pending[free]
                _, winners = np.unique(at[free], return_index=True)
                chosen = candidates[winners]
                table[slots[chosen]] = fingerprints[chosen]
                new[chosen] = True
                held = table[at]
            pending = pending[held != fingerprints[pending]]
            following = slots[pending] + steps[pending]
            following[following >= capacity] -= capacity
            slots[pending] = following
        return new

    def _grow(self, keys: int) -> None:
        held = self._table[self._table != 0]
        self._table = np.zeros(_prime_at_least(max(math.ceil(keys / _LOAD), len(self._table) * 3 // 2)), np.uint64)
        self._insert(held)


# Keys per slot the table is sized for. 0.85, not 0.8: 6 MB less for ten million keys
# (memory_10m's margin under 300 MB), for 0.03 µs more a key, the probe runs being longer.
_LOAD = 0.85
# Keys per slot past which it grows. Growing holds the old table and one half as large
# again at once (2.5 times the table: 235 MB for ten million keys), so it is kept for a
# real surprise: 10.6% more keys than the first block's rows foretold (12.5% at 0.8 and
# 0.9 before). Short of it, a fuller table only costs CPU: 10% more keys than expected,
# up to 2.9 µs a key over the last tenth where 0.7 is usual (probe runs lengthen).
_GROW_AT = 0.94
_MIN_SLOTS = 1024


def _prime_at_least(number: int) -> int:
    """The least prime >= `number` (a few thousand trial divisions for ten million keys)."""
    candidate = max(3, number) | 1
    while any(candidate % divisor == 0 for divisor in range(3, math.isqrt(candidate) + 1, 2)):
        candidate += 2
    return candidate
