"""The line format of prepared batches (`chunks/<n>.items`): written by the plan
(`batch_line`), read by the chunk activity (`PreparedBatch`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

__all__ = ["PreparedBatch", "batch_line", "row_runs"]

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_UNIT = "\x1f"  # ASCII unit separator: between the keys (and identifiers) of a batch line
_UNIT_BYTE = _UNIT.encode()


def batch_line(rows: list[int], keys: list[str], identifiers: list[str], items: str,
               keys_in_items: bool = False) -> list[str]:
    """One prepared batch: its row numbers, keys and raw identifiers, and the JSON array of its items.

    Written as `rows<TAB>keys<TAB>identifiers<TAB>items`: the row numbers as runs
    (`row_runs`; lines written before runs, one number each, read the same), keys and
    identifiers joined by the unit separator: splitting that is C-fast where JSON
    decoding a list per row was not. A value holding a separator (never seen in
    practice) makes the batch's metadata JSON instead, marked by a leading `[`. Returned
    as the line's parts, so that a large batch (Snapchat's 100,000 hashes) is not copied
    once more to join them.

    A raw identifier written as its key is (most emails are) is stored empty: keys are never
    empty, so an empty identifier can only mean that, and every batch is smaller to store
    and to read back. With `keys_in_items` (a vendor whose items are the keys: Snapchat's
    hashes, `Destination.ITEMS_ARE_KEYS`) the keys are not stored a second time: the keys
    field is left empty and the identifiers are stored whole; the sender reads the keys
    back from the items if it ever needs them (`PreparedBatch.keys`).
    """
    if keys_in_items:
        stored, joined_keys = identifiers, ""
    else:
        stored = [("" if identifier == key else identifier) for key, identifier in zip(keys, identifiers, strict=True)]
        joined_keys = _UNIT.join(keys)
    joined_identifiers = _UNIT.join(stored)
    if (keys_in_items or _plain(joined_keys, len(keys))) and _plain(joined_identifiers, len(stored)):
        return [row_runs(rows), "\t", joined_keys, "\t", joined_identifiers, "\t", items, "\n"]
    return [_ENCODE([rows, [] if keys_in_items else keys, stored]), "\t", items, "\n"]


def row_runs(rows: list[int]) -> str:
    """Increasing row numbers as runs of consecutive ones: "3-66,68-140,142".

    A batch's rows are taken in file order and mostly consecutive (the rows between are
    rejected or duplicates, ~1.5% in the benchmarks): each run is found by bisection, a
    few steps per gap, where writing every number cost ~0.3 µs a row (4 million of them
    in a million profiles to four vendors).
    """
    runs, start, count = [], 0, len(rows)
    while start < count:
        first = rows[start]
        low, high = start + 1, count  # rows[start:low] are consecutive; the run ends in [low, high]
        if rows[high - 1] - first != high - 1 - start:
            while high - low > 1:  # rows[start:high] are not consecutive
                middle = (low + high) // 2
                if rows[middle - 1] - first == middle - 1 - start:
                    low = middle
                else:
                    high = middle
            high = low
        last = rows[high - 1]
        runs.append(f"{first}-{last}" if last != first else str(first))
        start = high
    return ",".join(runs)


def _rows_of_runs(text: bytes) -> list[int]:
    rows: list[int] = []
    for run in text.split(b","):
        first, _, last = run.partition(b"-")
        rows += range(int(first), int(last or first) + 1)
    return rows


class PreparedBatch:
    """One prepared batch as a chunk activity reads it, from the bytes of its line.

    Nothing is copied or decoded that is not used: `items` is a view into the line, and
    the row numbers, keys and identifiers are decoded only when asked for. A Snapchat
    batch holds 50,000 rows, and sending it needs none of them. A line written without
    its keys (`batch_line`'s `keys_in_items`) has them read from its items by
    `keys_of_batch` (the destination's), if they are asked for.
    """

    __slots__ = ("items", "count", "last_row", "_rows", "_keys", "_identifiers", "_raw", "_keys_of_batch",
                 "_keys_stored")

    def __init__(self, line: bytes, keys_of_batch: Callable[[bytes], list[str]] | None = None):
        self._raw: list[str] | None = None
        self._keys_of_batch = keys_of_batch
        view = memoryview(line)
        if line.startswith(b"["):
            tab = line.index(b"\t")
            self._rows, self._keys, self._identifiers = json.loads(view[:tab].tobytes())
            self.items = view[tab + 1:]
            self.count, self.last_row = len(self._rows), self._rows[-1]
            if not self._keys:  # keys never stored (no batch is empty): they are in the items
                self._keys = None
        else:
            first = line.index(b"\t")
            second = line.index(b"\t", first + 1)
            third = line.index(b"\t", second + 1)
            self._rows, self._identifiers = view[:first], view[second + 1:third]
            self.items = view[third + 1:]
            # Keys are never empty, so an empty keys field means: not stored, they are in the items.
            self._keys = view[first + 1:second] if second > first + 1 else None
            counted = (first + 1, second) if self._keys is not None else (second + 1, third)
            self.count = line.count(_UNIT_BYTE, *counted) + 1
            last_run = line[line.rfind(b",", 0, first) + 1:first]
            self.last_row = int(last_run.rpartition(b"-")[2])
        self._keys_stored = self._keys is not None

    @property
    def rows(self) -> list[int]:
        if isinstance(self._rows, memoryview):
            self._rows = _rows_of_runs(self._rows.tobytes())
        return self._rows

    @property
    def keys(self) -> Sequence[str]:
        """The keys, decoded and split on first use."""
        return _Split(self, "_keys")

    @property
    def identifiers(self) -> list[str]:
        """The raw identifiers, as the segment wrote them (see `batch_line` for the empty ones)."""
        if self._raw is None:
            stored = self._identifiers
            if isinstance(stored, memoryview):
                stored = str(stored, "utf-8").split(_UNIT)
            # Stored whole where the keys were not stored (see `batch_line`).
            self._raw = stored if not self._keys_stored else [
                identifier or key for key, identifier in zip(self.keys, stored, strict=True)]
        return self._raw


class _Split(Sequence):
    """A batch's keys as a sequence that splits them only if someone looks."""

    def __init__(self, batch: PreparedBatch, attribute: str):
        self._batch, self._attribute = batch, attribute

    def _values(self) -> list[str]:
        value = getattr(self._batch, self._attribute)
        if value is None:  # not stored: read from the items
            if self._batch._keys_of_batch is None:
                raise ValueError("this batch's keys are in its items: read it with its destination's keys_of_batch")
            value = self._batch._keys_of_batch(self._batch.items)
            if len(value) != self._batch.count:
                raise ValueError(f"the batch holds {len(value)} keys in its items for {self._batch.count} rows")
            setattr(self._batch, self._attribute, value)
        elif isinstance(value, memoryview):
            value = str(value, "utf-8").split(_UNIT)
            setattr(self._batch, self._attribute, value)
        return value

    def __getitem__(self, index):  # type: ignore[override]
        return self._values()[index]

    def __len__(self) -> int:
        return self._batch.count

    def __iter__(self) -> Iterator[str]:  # Sequence's default asks for each item by index
        return iter(self._values())


def _plain(joined: str, count: int) -> bool:
    return joined.count(_UNIT) == count - 1 and "\t" not in joined and "\n" not in joined
