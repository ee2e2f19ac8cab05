"""Rate budgets: one connection's rate limit, shared by every process sending to it.

The chunk activities of a run may run on several hosts of a scaled-out Function App, and
two runs may send through one connection (one vendor account) at once. Each process has
a pacer per connection (`shared.http.pacing`) whose rate is the limit times this
process's share, agreed through one blob per connection::

    export-state/rate-budgets/<connection>.json
    {"processes": {"<process>": {"senders": 3, "seen": <epoch seconds>, "host": ..., "pid": ...}, ...},
     "hold_until": <epoch seconds>}

While it has chunk activities sending to the connection, a process reads the blob every
REFRESH_S, writes its entry (how many of its activities send) when that changes and
every EXPIRE_S/3 otherwise, and takes the part its senders are of all senders listed. So
whoever is sending uses the whole limit: a run's first chunk, planned while the others
are not yet, sends at the full limit, not at 1/width of it; one host running 8 of a
fan-out of 32 uses all of it until other hosts join.

Staying under the limit while shares change: a process lowers its share at once (fewer
senders here, more elsewhere), but counts its own added senders only once they have been
listed for SETTLE_S, by when every other process still sending has read them and slowed
down; a process new to the blob (or whose entry expired) has no share until then, unless
nobody else is listed. A process that could not read the blob for STALE_S stops sending
until it can (others may have grown meanwhile). Entries not written for EXPIRE_S (a host
gone) are dropped, and at once those of a process of the same machine that no longer runs
(a run killed, then resumed). Writes are conditional on the blob's ETag, so concurrent writers never
lose each other's entries.

A throttle window the vendor announces to one process (a 429's Retry-After, Braze's
exhausted window until its reset) is written at once as `hold_until`, and every process
sending to the connection waits it out from its next read (REFRESH_S at most), instead of
each collecting a 429 of its own to learn it.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from .memory import release_frames
from .processes import gone_from_here, this_process

__all__ = ["RateBudget", "rate_budget"]

log = logging.getLogger("segment_export.budgets")

# A process's view of the others is at most STALE_S old (older, it stops sending), so an
# entry written at t has been seen by every process still sending by t + STALE_S; SETTLE_S
# adds the time for which a pacer may have handed out turns at its old rate, and for which
# a burst it sent alone still counts: a turn handed out up to one burst window ahead,
# counted for one more (`shared.http.pacing`, MAX_BURST_WINDOW_S). Over a vendor window
# longer than that (Omnisend's minute), what the burst took is made up by the others
# sending at their smaller share meanwhile, the newcomer not yet at all.
REFRESH_S = 2.0
STALE_S = 5.0
SETTLE_S = 12.0
EXPIRE_S = 30.0
LINGER_S = 0.25  # an entry outlives the process's last sender by this much
CONFLICT_ATTEMPTS = 8


class RateBudget:
    """This process's share of one connection's rate limit (`shared.http.pacing.Budget`).

    The pacers of the connection call `join` and `leave` as chunk activities start and
    stop sending; a thread keeps the entry written while there are senders, and removes it
    when there are none.
    """

    def __init__(self, blob: BlobClient, *, refresh_s: float = REFRESH_S, stale_s: float = STALE_S,
                 settle_s: float = SETTLE_S, expire_s: float = EXPIRE_S,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._blob = blob
        self._here = this_process()
        self.process = f"{self._here['host']}-{self._here['pid']}-{uuid.uuid4().hex[:8]}"
        self._refresh_s, self._stale_s, self._settle_s, self._expire_s = refresh_s, stale_s, settle_s, expire_s
        self._clock, self._wall_clock = clock, wall_clock
        self._changed = threading.Condition()
        self._senders = 0
        self._thread: threading.Thread | None = None
        # Our senders as listed in the blob, oldest first: (when written, senders); a missing
        # entry counts as 0 listed. The oldest kept is the one in force SETTLE_S ago.
        self._listed: deque[tuple[float, int]] = deque()
        self._others = 0  # senders of the other processes, at the last read
        self._read_at = -float("inf")  # when the last successful read began
        self._hold_until = 0.0  # wall clock: the latest throttle window known, announced here or read
        self._announced = 0.0  # the end of one announced here and not yet written
        # Wall clock: since when no other process may have sent to the connection, as far as
        # the reads tell (None: one is listed as sending); and the ETag of this process's
        # last write, to tell a blob another process wrote since from its own removal.
        self._alone_since: float | None = None
        self._written: str | None = None

    def join(self) -> None:
        with self._changed:
            self._senders += 1
            if self._senders > 1:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep, name="rate-budget", daemon=True)
                self._thread.start()
            else:  # list this process now, not at the next refresh
                self._changed.notify()

    def leave(self) -> None:
        with self._changed:
            self._senders = max(0, self._senders - 1)
            if not self._senders:  # remove the entry soon, unless a sender joins meanwhile
                self._changed.notify()

    @property
    def senders(self) -> int:
        return self._senders

    def share(self) -> float:
        with self._changed:
            now = self._clock()
            if not self._senders or not self._listed or not self._listed[-1][1] or now - self._read_at > self._stale_s:
                return 0.0  # not listed, or not known to be alone: others may not have made room
            if self._others == 0:  # listed, and nobody else: whoever joins waits for us to see them
                return 1.0
            self._forget_settled(now)
            counted = min([self._senders] + [senders for _, senders in self._listed])
            return counted / (counted + self._others)

    def alone_s(self) -> float | None:
        """Seconds since another process may last have sent to the connection (`Budget.alone_s`):
        None while this process has no whole share (another is listed, or none yet)."""
        if self.share() != 1.0:
            return None
        with self._changed:
            since = self._alone_since
        return None if since is None else max(0.0, self._wall_clock() - since)

    def hold(self, seconds: float) -> None:
        """A vendor announced a throttle window to this process: written for the others now."""
        until = self._wall_clock() + seconds
        with self._changed:
            if until <= self._hold_until:  # known already (and written, or about to be)
                return
            self._hold_until = self._announced = until
            self._changed.notify()  # the keeping thread writes it now, not at its next refresh

    def held_s(self) -> float:
        """Seconds left of the latest throttle window known (0: none)."""
        return max(0.0, self._hold_until - self._wall_clock())

    def _forget_settled(self, now: float) -> None:
        while len(self._listed) > 1 and self._listed[1][0] <= now - self._settle_s:
            self._listed.popleft()

    def _keep(self) -> None:
        """Read the blob every REFRESH_S while this process has senders (writing its entry when
        due); remove the entry once none are left."""
        while True:
            with self._changed:
                senders = self._senders
            synced = False
            try:
                self._sync(senders)
                synced = True
            except Exception as error:  # storage unreachable or refusing: the share goes stale, sending waits
                log.warning("rate budget %s not updated: %s", self._blob.blob_name, type(error).__name__)
                release_frames(error)
            with self._changed:
                if not senders and not self._senders:  # removed (or left to expire): nothing sends here
                    self._thread = None
                    return
                if senders and self._senders:  # woken early when the last sender leaves, or to write a hold
                    self._changed.wait_for(lambda synced=synced: not self._senders or (synced and self._announced),
                                           timeout=self._refresh_s)
                if not self._senders:  # chunks of one run follow each other: keep the entry a moment
                    self._changed.wait_for(lambda: self._senders, timeout=LINGER_S)

    def remove(self) -> None:
        """Take this process's entry out now, if it has one (at exit: a stopped process sends nothing)."""
        with self._changed:
            listed = bool(self._listed) and self._listed[-1][1] > 0
            self._senders = 0
        if listed:
            try:
                self._sync(0)
            except Exception as error:  # it expires by itself
                release_frames(error)

    def _sync(self, senders: int) -> None:
        for _ in range(CONFLICT_ATTEMPTS):
            senders = min(senders, self._senders)  # fewer since (a chunk ended, the process exiting): list those
            read_at = self._clock()
            document, etag, modified = self._read()
            now = self._wall_clock()
            listed = {name: entry for name, entry in (document.get("processes") or {}).items()
                      if isinstance(entry, dict) and isinstance(entry.get("seen"), (int, float))}
            # Another's entry counts until it expires, or at once no more if it names a
            # process of this machine that is gone (killed: its share is free now, where
            # the run resumed after it would otherwise wait SETTLE_S, then send at half rate).
            processes = {name: entry for name, entry in listed.items()
                         if name != self.process and now - entry["seen"] < self._expire_s
                         and not gone_from_here(entry.get("host"), entry.get("pid"))}
            others = sum(max(0, int(entry.get("senders") or 0)) for entry in processes.values())
            # Nobody else sending: since the blob was last written (the last one to leave took
            # its entry out then), or since now where it lists one gone or expired (it may
            # have sent until it stopped). Written last by this process: nothing new of others.
            quiet_since = now if set(listed) - {self.process} - set(processes) else modified
            changed = etag != self._written
            mine = listed.get(self.process)
            held = document.get("hold_until")
            held = float(held) if isinstance(held, (int, float)) else 0.0
            announced = self._announced
            if (mine and mine.get("senders") == senders and now - mine["seen"] < self._expire_s / 3
                    and announced <= held):
                self._took(read_at, others, senders, True, held, quiet_since, changed)  # listed as we are
                return
            if senders:
                processes[self.process] = {"senders": senders, "seen": round(now, 3), **self._here}
            # `written_at`: until when the writer may have sent (it writes its removal after its last request).
            written: dict[str, Any] = {"processes": processes, "written_at": round(now, 3)}
            hold = max(held, announced)
            if hold > now:  # a window still running is kept, whoever announced it
                written["hold_until"] = round(hold, 3)
            try:
                written_etag = self._write(written, etag)
            except (ResourceModifiedError, ResourceExistsError) as conflict:  # another process wrote first
                release_frames(conflict)
                continue
            with self._changed:
                if self._announced <= hold:
                    self._announced = 0.0
            self._took(read_at, others, senders, bool(mine) and now - mine["seen"] < self._expire_s, hold,
                       quiet_since, changed)
            with self._changed:
                self._written = written_etag
            return
        raise RuntimeError("rate budget: too many concurrent writers")

    def _took(self, read_at: float, others: int, senders: int, listed: bool, held: float,
              quiet_since: float, changed: bool) -> None:
        """What a read (and the write after it, if any) told: others' senders, ours as listed
        now, the latest throttle window, and since when nobody else sent (`changed`: the
        blob was written by another process since this one's last write)."""
        with self._changed:
            self._hold_until = max(self._hold_until, held)
            if others:
                self._alone_since = None
            elif changed or self._alone_since is None:
                self._alone_since = quiet_since
            if not listed:  # others have not counted us: what we list counts for us after SETTLE_S
                self._listed.clear()
                self._listed.append((read_at, 0))
            self._listed.append((self._clock(), senders))
            self._forget_settled(self._clock())
            self._others, self._read_at = others, read_at

    def _read(self) -> tuple[dict[str, Any], str | None, float]:
        """The document, its ETag, and when it was last written (minus infinity if there is
        none): as its writer wrote it (hosts' clocks are trusted to agree within a second or
        so, as the entries' `seen` are), else by storage, rounded up to its whole seconds."""
        try:
            download = self._blob.download_blob()
        except ResourceNotFoundError as missing:
            release_frames(missing)
            return {}, None, -math.inf
        try:
            document = json.loads(download.readall())
        except ValueError:  # not ours to keep: rewritten whole
            document = {}
        document = document if isinstance(document, dict) else {}
        written = document.get("written_at")
        if not isinstance(written, (int, float)) or isinstance(written, bool):
            modified = download.properties.last_modified
            written = modified.timestamp() + 1.0 if modified is not None else self._wall_clock()
        return document, download.properties.etag, float(written)

    def _write(self, document: dict[str, Any], etag: str | None) -> str | None:
        """Write `document` over the version `etag` (None: where there is none); its new ETag."""
        data = json.dumps(document, indent=1).encode("utf-8")
        if etag is None:
            return self._blob.upload_blob(data, overwrite=False).get("etag")
        try:
            return self._blob.upload_blob(data, overwrite=True, etag=etag,
                                          match_condition=MatchConditions.IfNotModified).get("etag")
        except HttpResponseError as error:
            if error.status_code == 412:
                raise ResourceModifiedError(message="modified since read") from None
            raise


_budgets: dict[str, RateBudget] = {}
_budgets_lock = threading.Lock()


def rate_budget(blob: BlobClient) -> RateBudget:
    """The process's budget kept in `blob`: one per connection, whatever pacers use it."""
    with _budgets_lock:
        budget = _budgets.get(blob.url)
        if budget is None:
            budget = _budgets[blob.url] = RateBudget(blob)
        return budget


@atexit.register
def _remove_entries() -> None:
    """An exiting process takes its entries out, so others need not wait for them to expire.

    At most EXIT_WAIT_S: storage that cannot be reached then (a network gone, a local
    Azurite stopped first) held the exit for the SDK's retries, over 80 s a call; an entry
    left behind only makes the others wait until it expires (EXPIRE_S).
    """
    with _budgets_lock:
        budgets = list(_budgets.values())
    if not budgets:
        return
    removing = threading.Thread(target=lambda: [budget.remove() for budget in budgets],
                                name="rate-budget-exit", daemon=True)
    removing.start()
    removing.join(EXIT_WAIT_S)


EXIT_WAIT_S = 2.0
