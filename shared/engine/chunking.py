"""Cutting a plan's rows into chunks: how many rows a chunk takes, and the writer that
collects one chunk (its sendable rows as encoded batches, the others as counts and
reasons) and stores its files."""

from __future__ import annotations

import math
from itertools import compress, filterfalse
from typing import Any

from destinations import Destination
from destinations.rows import Rows

from ..columns import picker
from ..segments import Block
from ..state import ITEMS_COMPRESSION, BackgroundWrites
from .batches import batch_line
from .services import Services
from .tally import Tally

__all__ = ["MAX_CHUNK_ROWS", "MIN_CHUNK_ROWS", "ChunkWriter", "chunk_rows", "rows_per_chunk"]


def rows_per_chunk(configured: int | None, batch: int, width: int, estimated_rows: float) -> int:
    """Rows per chunk: CHUNK_ROWS if set; else enough chunks for the fan-out width, within
    MIN_CHUNK_ROWS and MAX_CHUNK_ROWS. Always whole batches, so only a chunk's last request
    is ever partly filled."""
    rows = configured or min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, math.ceil(estimated_rows / width)))
    return max(batch, math.ceil(rows / batch) * batch)


def chunk_rows(plan: dict[str, Any], start: int, full_only: bool, batch: int) -> int:
    """Rows of the chunk that starts at byte `start` of the cursor's segment.

    `rows_per_chunk`, but near the end of the segments a quarter of the rows left (whole
    batches, at least a quarter of `rows_per_chunk`): running chunks share the rate limit
    evenly, each with its few requests in flight, so the chunks planned last are what the
    run waits for once the plan is read; smaller, they end about when the ones before
    them do. `full_only`:
    every chunk full, for a chunk size set in the settings (CHUNK_ROWS) and for one chunk
    at a time, where smaller chunks would only add each one's fixed cost.
    """
    cursor = plan["cursor"]
    full = cursor["rows_per_chunk"]
    if full_only or not cursor["expected_rows"]:
        return full
    segments = plan["segments"]
    left = segments[cursor["segment"]]["bytes"] - start + sum(
        segment["bytes"] - segment["data_start"] for segment in segments[cursor["segment"] + 1:])
    data_bytes = sum(segment["bytes"] - segment["data_start"] for segment in segments)
    rows_left = left * cursor["expected_rows"] / max(1, data_bytes)
    quarter, least = math.ceil(rows_left / 4 / batch) * batch, math.ceil(full / 4 / batch) * batch
    return max(batch, least, min(full, quarter))


# Bounds of automatic chunk sizes: a chunk activity has a fixed cost (a dozen blob
# operations), so tiny chunks waste it; a huge one holds an activity and its memory long.
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 10_000, 100_000


class ChunkWriter:
    """Collects one chunk: its sendable rows as encoded batches, the others as counts and reasons."""

    def __init__(self, plan: dict[str, Any], segment: str, start: int, first_row: int, destination: Destination,
                 services: Services, writes: BackgroundWrites):
        self.plan, self.segment, self.start, self.first_row = plan, segment, start, first_row
        self.destination, self.services, self.writes = destination, services, writes
        self.batch_size = destination.settings["batch_size"]
        self.index = len(plan["chunks"])
        self.rows = self.items = 0
        self.batches = services.runs.items_writer(plan["export"]["name"], plan["run_id"], self.index, writes)
        self._rows: list[int] = []
        self._keys: list[str] = []
        self._identifiers: list[str] = []
        self._items: list[str] = []
        self.tally = Tally(segment)

    def take(self, block: Block, begin: int, end: int, width: int, key_index: int, keys: list[str | None],
             firsts: list[bool], problems: dict[int, tuple[str, str]]) -> None:
        """Account rows [begin, end) of `block` (`firsts` says which of them come first), their
        items made a column at a time; the batches that fill up are written."""
        rows, number = block.rows, block.first_row
        sendable = list(compress(range(begin, end), firsts))
        rejected = []  # (row number, identifier, reason): written in row order
        if len(sendable) < end - begin:
            duplicates = end - begin - len(sendable)
            for index, (kind, reason) in problems.items():
                if begin <= index < end:
                    duplicates -= 1
                    if kind == "skipped":
                        self.tally.skip(reason)
                    else:
                        rejected.append((number + index, _raw(rows[index], key_index), reason))
            if duplicates:
                self.tally.skip("duplicate of an earlier row", duplicates)
        if sendable:
            chosen = Rows(rows, sendable, width, block.derived, block.derived_lock)
            sent_keys, identifiers = chosen.pick(keys), chosen.values(key_index)
            items, refused = self.destination.items(sent_keys, chosen)
            if refused:  # a field the vendor would refuse
                rejected += [(number + sendable[at], identifiers[at], reason) for at, reason in refused.items()]
                keep = picker(list(filterfalse(refused.__contains__, range(len(sendable)))))
                sendable, items, sent_keys, identifiers = map(keep, (sendable, items, sent_keys, identifiers))
            self._rows += map(number.__add__, sendable)
            self._keys += sent_keys
            self._identifiers += identifiers
            self._items += items
            while len(self._items) >= self.batch_size:
                self._close_batch(self.batch_size)
        for row, identifier, reason in sorted(rejected):
            self.tally.reject(row, identifier, reason, "export")
        self.rows += end - begin

    def _close_batch(self, size: int | None = None) -> None:
        """Write the first `size` items waiting (all of them by default) as one batch."""
        size = len(self._items) if size is None else size
        if size:
            self.batches.write(batch_line(self._rows[:size], self._keys[:size], self._identifiers[:size],
                                          self.destination.encode_batch(self._items[:size]),
                                          self.destination.ITEMS_ARE_KEYS))
            self.items += size
            del self._rows[:size], self._keys[:size], self._identifiers[:size], self._items[:size]

    def close(self, end: int) -> None:
        self._close_batch()
        if self.rows == 0:
            return
        index = self.index
        self.batches.close()
        runs, name, run_id = self.services.runs, self.plan["export"]["name"], self.plan["run_id"]
        invalid = self.tally.rejected_csv
        self.writes.submit(runs.write_rejected, name, run_id, index, invalid, "invalid")
        # What the chunk activity needs besides its items travels in the plan it reads anyway
        # (a file of its own cost two storage calls a chunk).
        self.plan["chunks"].append({
            "index": index, "segment": self.segment, "start": self.start, "end": end, "first_row": self.first_row,
            "rows": self.rows, "items": self.items, "rejected": dict(self.tally.rejected),
            "skipped": dict(self.tally.skipped),
            "items_compression": ITEMS_COMPRESSION,
            "invalid_file": runs.rejected_path(name, run_id, index, "invalid") if invalid else None,
            # What preparing its items noticed (the destination serves one chunk at a time).
            "notes": dict(self.destination.notes)})
        self.destination.notes.clear()


def _raw(row: list[str], key_index: int) -> str:
    return row[key_index] if key_index < len(row) else ""
