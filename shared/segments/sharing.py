"""Blocks shared by the plans of one process that read the same segment at the same time.

A schedule starts every enabled export at once, and exports of one audience read the
same segment: each plan downloaded, parsed and checked every row for itself (a million
rows: ~1.5 CPU-s of parsing and ~1 of email checks per plan, here). A block starts on a
grid fixed by the file (`parsing.cut_blocks`), so the plan that needs a block first
reads it and publishes it here, and the others take it instead of reading it again.
The plans' per-row work differs (a vendor's JSON costs more than a hash), so the one in
front waits for one more than LEAD_BYTES behind (LEAD_WAIT_S at most per block); one
that still falls behind the blocks kept reads for itself, as it would alone.
Correctness never depends on sharing: plans in other processes or hosts, or out of
step, read the file themselves and find the same blocks.

A block is kept only while another plan on the same segment still has to read it: one
plan alone holds no block more than it would without sharing. A plan read in parts
leaves a bookmark where its part stopped, so that what it has yet to read is kept for
its next part (a few hundred milliseconds later, locally), for BOOKMARK_S at most; for
its first HANDOVER_S the plans in front wait for it as for one reading, so that they
stay in step through its part's end. (A block kept with its columns worked out is ~9
MB: plans that read on while one waited for storage to take its part's last writes
kept six for it, and four exports of a million rows peaked at 205-234 MB in the
exporter instead of ~197.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .parsing import BLOCK_BYTES, Block

__all__ = ["SharedBlocks", "shared_blocks"]

# Blocks kept at most (all segments): a block's rows take ~7 times its bytes, ~4 MB, and
# with the columns four exports work out from them ~9 MB. Plans in step keep 2-3 (one
# LEAD_BYTES behind another); more are kept only for a plan held back (slow storage
# writes at a part's end), and each one more is a few percent of a run's memory.
MOST_BLOCKS = 4
BOOKMARK_S = 30.0
# A plan waits this long for a block another one is reading, then reads it itself.
WAIT_S = 10.0
# How far a plan may read ahead of the others on the same segment, and how long it waits
# for them to catch up before it reads on anyway.
LEAD_BYTES = 2 * BLOCK_BYTES
LEAD_WAIT_S = 2.0
# How long after a part ends its plan is waited for as one still reading: its next part
# starts within a second locally, unless storage is slow to take the part's last writes;
# one that runs in another process, or never, holds the others back this long at most,
# as long as a plan that reads is waited for.
HANDOVER_S = 2.0


@dataclass(eq=False)
class _Reader:
    name: str  # the plan reading (export and run): its next part takes up its bookmark
    position: int  # where the block it reads (or will read next) starts
    until: float | None = None  # a bookmark (the plan between two parts) expires then
    paused_at: float = 0.0  # when its last part ended (with a bookmark)


@dataclass(eq=False)
class _Entry:
    owner: _Reader  # the reader that reads it (and publishes it)
    position: int  # where its block starts
    block: Block | None = None  # None while it is being read


class SharedBlocks:
    """The blocks being read by the plans of this process, per segment version."""

    def __init__(self, most: int = MOST_BLOCKS):
        self._most = most
        self._changed = threading.Condition()
        self._entries: dict[Any, dict[int, _Entry]] = {}
        self._readers: dict[Any, list[_Reader]] = {}
        self.read_blocks = self.taken_blocks = 0  # blocks read from storage, and taken from another plan

    def read(self, segment: Any, name: str, start: int, first_row: int, end: int,
             open_blocks: Callable[[int, int], Iterator[Block]]) -> Iterator[Block]:
        """The blocks of `segment` from `start` (a block start of the grid) to `end`.

        `segment` names one version of one file and the end read to; `open_blocks(start,
        first_row)` reads the file from a block start. A block read here is published for
        the plans on the same segment behind this one.
        """
        me = self._join(segment, name, start)
        blocks: Iterator[Block] | None = None
        at = None  # where `blocks` goes on
        position, number, last, stopped = start, first_row, None, False
        try:
            while position < end:
                # Done with the block before (a part stops within a block, so the block a plan
                # holds is kept for it, at no cost: it holds it anyway).
                self._moved(segment, me, position)
                entry = self._take_or_claim(segment, position, me)
                if entry is not None and entry.block is not None:  # read by another plan, or by this one's last part
                    block = entry.block
                    self._count(taken=1)
                else:  # this plan reads the block (for itself only when entry is None)
                    try:
                        if blocks is None or at != position:
                            if blocks is not None:
                                blocks.close()
                            blocks = open_blocks(position, number)
                        block = next(blocks, None)
                    except BaseException:
                        self._give_up(segment, entry)
                        raise
                    if block is None:
                        self._give_up(segment, entry)
                        break
                    at = block.end
                    self._count(read=1)
                    if entry is not None:
                        self._publish(segment, entry, block, me, end)
                position, number, last = block.end, block.first_row + len(block.rows), block.start
                try:
                    yield block
                except GeneratorExit:  # the plan's part ended here: its next part goes on from this block
                    stopped = True
                    raise
                del block, entry
        finally:
            if blocks is not None:
                blocks.close()
            self._leave(segment, me, bookmark=last if stopped and position < end else None)

    # -- the bookkeeping, under one lock ------------------------------------------------

    def _count(self, read: int = 0, taken: int = 0) -> None:
        with self._changed:
            self.read_blocks += read
            self.taken_blocks += taken

    def _join(self, segment: Any, name: str, start: int) -> _Reader:
        with self._changed:
            readers = self._readers.setdefault(segment, [])
            me = next((r for r in readers if r.name == name and r.until is not None), None)
            if me is None:
                me = _Reader(name, start)
                readers.append(me)
            me.position, me.until = start, None
            return me

    def _take_or_claim(self, segment: Any, position: int, me: _Reader) -> _Entry | None:
        """The entry at `position`: published, or claimed now by `me` (or already by `me`);
        None if another reader has been reading it for longer than WAIT_S.

        A reader about to read a block waits (LEAD_WAIT_S at most) while another plan
        reading this segment (or between two of its parts, for HANDOVER_S) is more than
        LEAD_BYTES behind: the plans' per-row work
        differs (a vendor's items cost more to write than a hash), and a reader in front
        that never waits leaves the others to read every block again for themselves.
        """
        now = time.monotonic()
        deadline, lead_deadline = now + WAIT_S, now + LEAD_WAIT_S
        with self._changed:
            entries = self._entries.setdefault(segment, {})
            while True:
                entry = entries.get(position)
                now = time.monotonic()
                if entry is not None and entry.block is not None:
                    return entry
                if entry is not None and entry.owner is not me:  # another reader is reading it
                    if now >= deadline:
                        return None
                    self._changed.wait(deadline - now)
                    continue
                behind = [r for r in self._readers.get(segment, [])
                          if r is not me and r.position + LEAD_BYTES < position
                          and (r.until is None or now < r.paused_at + HANDOVER_S)]
                if now < lead_deadline and behind:
                    # Until one moves (notified), or the handover of the one between parts ends.
                    self._changed.wait(min([lead_deadline, *(r.paused_at + HANDOVER_S for r in behind
                                                             if r.until is not None)]) - now)
                    continue
                if entry is None:
                    entry = entries[position] = _Entry(me, position)
                return entry

    def _publish(self, segment: Any, entry: _Entry, block: Block, me: _Reader, end: int) -> None:
        """Offer the block to the readers behind, and claim the next one (this reader reads on)."""
        with self._changed:
            entry.block = block
            entries = self._entries[segment]
            if block.end < end and block.end not in entries:
                entries[block.end] = _Entry(me, block.end)
            self._changed.notify_all()

    def _give_up(self, segment: Any, entry: _Entry | None) -> None:
        """An entry this reader claimed will not be read by it: another reader may."""
        with self._changed:
            entries = self._entries.get(segment, {})
            if entry is not None and entry.block is None and entries.get(entry.position) is entry:
                del entries[entry.position]
            self._changed.notify_all()

    def _moved(self, segment: Any, me: _Reader, position: int) -> None:
        with self._changed:
            me.position = position
            self._forget(segment)
            self._changed.notify_all()

    def _leave(self, segment: Any, me: _Reader, bookmark: int | None) -> None:
        with self._changed:
            entries = self._entries.get(segment, {})
            for position in [p for p, e in entries.items() if e.owner is me and e.block is None]:
                del entries[position]  # claimed, never to be read by this reader
            if bookmark is None:
                self._readers[segment].remove(me)
            else:
                me.paused_at = time.monotonic()
                me.position, me.until = bookmark, me.paused_at + BOOKMARK_S
            self._forget(segment)
            self._changed.notify_all()

    def _forget(self, segment: Any) -> None:
        """Drop the blocks no reader still has to read, expired bookmarks, and the oldest
        blocks beyond MOST_BLOCKS."""
        now = time.monotonic()
        readers = self._readers.get(segment, [])
        readers[:] = [r for r in readers if r.until is None or r.until > now]
        entries = self._entries.get(segment, {})
        for position in [p for p, e in entries.items() if e.block is not None]:
            if not any(r.position <= position for r in readers):
                del entries[position]
        if not readers and not entries:
            self._readers.pop(segment, None)
            self._entries.pop(segment, None)
        kept = sorted((p, s) for s, es in self._entries.items() for p, e in es.items() if e.block is not None)
        for position, other in kept[:max(0, len(kept) - self._most)]:
            del self._entries[other][position]

    def held(self) -> int:
        """Blocks kept now (for tests)."""
        with self._changed:
            return sum(e.block is not None for es in self._entries.values() for e in es.values())


_shared = SharedBlocks()


def shared_blocks() -> SharedBlocks:
    """This process's shared blocks."""
    return _shared
