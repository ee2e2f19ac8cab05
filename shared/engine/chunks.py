"""Exporting one chunk to the run's destination: the work of one activity.

The plan already checked the chunk's rows and encoded the vendor items of those that can
be sent (`chunks/<n>.items`); this activity sends them in batches. Every row ends in one
count: delivered (the vendor confirmed it), rejected (by the plan's checks, by the
vendor, or not sent because the destination failed; each with its reason and listed in
the rejected-rows files), or skipped (a duplicate, or no identifier). When the
destination fails (wrong key, unknown audience, a vendor down for longer than the retry
policy), the remaining items are rejected "not sent", so the accounting stays exact
and the rejected rows are exactly what still has to reach the vendor.

Nothing recorded as confirmed is sent twice. Once the vendor confirmed a batch, and at
most every PROGRESS_INTERVAL_S seconds (0: after every batch), the chunk appends a
progress record (the rows accounted since the last record, through the batch's last
row) before it sends the next batch. An activity that starts again (host recycled,
process killed, `run --resume`) restores the records and continues after the last
recorded row (where two executions ran at once, their records interleave: only those
that go on from the last one counted count, `Tally.restore`); a chunk with a final
checkpoint just returns it. The interval trades the
cost of a blob write per batch (at Braze's 75 profiles per request, as much CPU as the
requests themselves) against resending, after a crash, what the vendor confirmed in
the last interval: upserts that change nothing.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from destinations import Destination, DestinationError, destination_class
from destinations.base import Pending

from ..config import Connection, Export
from ..http import HttpClient, Pacer, pacer_for, transport_for, without_maybe_applied
from ..secrets import SecretError
from ..state import compression_of
from .batches import PreparedBatch
from .planning import load_definitions, now_iso
from .services import Services
from .tally import Tally

__all__ = ["export_chunk"]


def export_chunk(task: dict[str, Any], services: Services) -> dict[str, Any]:
    """Export chunk `task["chunk"]` of run `task["run_id"]`; returns its (small) result.

    `task["abandon"]`, when set, is why the destination already failed in this run: the
    chunk's items are then accounted without being sent ("not sent"; "not confirmed" with
    `task["attempted"]`, for a chunk whose own activity ran and failed: it may have sent
    batches after its last progress record).
    """
    export_name, run_id, index = task["export"], task["run_id"], task["chunk"]
    runs = services.runs
    done, records = runs.chunk_state(export_name, run_id, index)
    if done is not None:
        return done
    plan = runs.plan(export_name, run_id, chunk=index)
    chunk = plan["chunks"][index]
    segment = next(s for s in plan["segments"] if s["path"] == chunk["segment"])
    connection, export = load_definitions(plan, services)
    cls = destination_class(connection.type)
    started, clock = now_iso(), time.monotonic()
    items = runs.items(export_name, run_id, index, compression_of(chunk))
    tally = Tally(chunk["segment"])
    resume_after = tally.restore(records)
    if not resume_after:
        tally.add_prepared(chunk)  # a record restored above already holds these counts
    sender = _Sender(cls, tally, lambda record: runs.append_progress(export_name, run_id, index, record),
                     services.settings.progress_interval_s, attempted=bool(task.get("attempted")))
    sender.failure = task.get("abandon")
    pacer = None
    if sender.failure is None and chunk["items"]:
        # One pacer per connection in this process; its rate is agreed with every other
        # process sending to the connection (the storage account's rate budget).
        storage = services.storage
        pacer = pacer_for(f"{storage.service.url}|{connection.name}", float(connection.settings["requests_per_second"]),
                          cls.SPEC.rate_window_s, budget=lambda: storage.rate_budget(connection.name))
        pacer.join()
    try:
        if pacer is not None:
            try:
                sender.destinations = _destinations(cls, connection, export, segment["columns"], services, pacer)
            except SecretError as error:
                sender.failure = f"{cls.SPEC.display_name}: {error}"
        with sender:
            for line in items:
                batch = PreparedBatch(line, cls.keys_of_batch)
                if batch.last_row > resume_after:  # progress is recorded at batch ends: batches are whole
                    sender.send(batch)
    finally:
        if pacer is not None:
            pacer.leave()
    stats = sender.stats()
    requests = {key: tally.requests.get(key, 0) + stats.get(key, 0) for key in set(tally.requests) | set(stats)}
    result = {
        "chunk": index, "segment": chunk["segment"], "rows": tally.rows, "delivered": tally.delivered,
        "rejected": sum(tally.rejected.values()), "skipped": sum(tally.skipped.values()),
        "reasons": {"rejected": dict(tally.rejected), "skipped": dict(tally.skipped)},
        "requests": {key: round(value, 3) for key, value in requests.items()},
        "failure": sender.failure,
        "rejected_files": [path for path in (chunk["invalid_file"],
                                             runs.write_rejected(export_name, run_id, index, tally.rejected_csv))
                           if path],
        "resumed_after_row": resume_after or None,
        "started_at": started, "finished_at": now_iso(), "duration_s": round(time.monotonic() - clock, 3),
    }
    runs.write_checkpoint(export_name, run_id, index, result)
    return result


def _destinations(cls: type[Destination], connection: Connection, export: Export, columns: dict[str, int],
                  services: Services, pacer: Pacer) -> list[Destination]:
    """One destination, with its own client, per request in flight: each is used by one thread at a time."""
    credentials = services.secrets.get(connection.secret_name)
    problem = cls.credentials_problem(credentials)
    if problem:
        raise SecretError(f"secret {connection.secret_name!r} {problem}")
    return [cls(connection, export, columns, credentials,
                HttpClient(cls.SPEC.display_name, pacer, transport_for(connection.name),
                           timeout=float(connection.settings["timeout_s"]), describe=cls.describe))
            for _ in range(connection.settings["requests_in_flight"])]


class _Sender:
    """Sends prepared batches, several in flight; accounts them in order; after a failure,
    accounts the rest as not sent.

    With one request at a time, a chunk sends at most one batch per round trip: at
    100-200 ms, less than its share of a limit of 10 or more requests a second. The
    requests in flight share the chunk's pacer, so the limit holds whatever their number.
    Their outcomes are taken in the order they were sent, so a progress record still
    covers every row before its last one.
    """

    def __init__(self, cls: type[Destination], tally: Tally, confirm: Callable[[dict[str, Any]], None],
                 interval_s: float, attempted: bool = False):
        self.vendor = cls.SPEC.display_name
        self.tally = tally
        self.confirm = confirm  # stores a progress record once the vendor confirmed batches
        self.interval_s = interval_s
        self.destinations: list[Destination] = []  # one per request in flight
        self.failure: str | None = None
        # What the rows after a failure are, in their reason: where an earlier attempt of the
        # chunk ran, it may have sent them.
        self.unsent = ("not confirmed (it may have been sent before its chunk activity failed)" if attempted
                       else "not sent")
        self._in_flight: deque[tuple[PreparedBatch, Future]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._sent = 0
        self._unsettled: list[tuple[PreparedBatch, Pending]] = []
        self._reported: Counter = Counter()
        self._recorded_at = time.monotonic()

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *failure: object) -> None:
        """Take every outcome still in flight and settle what the vendor processes later."""
        try:
            if failure[0] is None:
                self._land_all()
                self.settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def send(self, batch: PreparedBatch) -> None:
        """Send one prepared batch (once one of those in flight has landed, if all are busy).

        A batch's rows are accounted when its outcome is: a progress record then never
        counts a row after the batch it was written for.
        """
        if self.failure is None and len(self._in_flight) >= len(self.destinations):
            self._land(*self._in_flight.popleft())
        if self.failure is not None:
            self._land_all()  # those were sent: their outcomes count
            self.tally.rows += batch.count
            self._reject(batch, f"{self.unsent}: {self.failure}")
            return
        if len(self._unsettled) >= self.destinations[0].MAX_UNSETTLED > 0:
            self._land_all()
            self.settle()
        destination = self.destinations[self._sent % len(self.destinations)]
        self._sent += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.destinations), thread_name_prefix=f"send-{self.vendor}")
        self._in_flight.append((batch, self._pool.submit(destination.send, batch.keys, batch.items)))

    def stats(self) -> dict[str, Any]:
        """The request statistics of all this chunk's clients."""
        total: Counter = Counter()
        for destination in self.destinations:
            total.update(destination.http.stats.as_dict())
        return dict(total)

    def _land_all(self) -> None:
        while self._in_flight:
            self._land(*self._in_flight.popleft())

    def _land(self, batch: PreparedBatch, sent: Future) -> None:
        """Account the outcome of a batch sent earlier (a batch in flight when another failed included)."""
        self.tally.rows += batch.count
        try:
            outcome = sent.result()
        except DestinationError as error:
            # The rows after it were not sent: their reason is the failure, not what is
            # unknown of this batch (whether the vendor applied it).
            self.failure = self.failure or without_maybe_applied(str(error))
            self._reject(batch, str(error))
            return
        if isinstance(outcome, Pending):
            self._unsettled.append((batch, outcome))
            return
        self._account(batch, outcome)
        self._record(batch.last_row)

    def settle(self) -> None:
        """Wait for the vendor to finish the batches it accepted, and account them."""
        delay, waited = SETTLE_FIRST_S, 0.0
        while self._unsettled:
            try:
                outcomes = self.destinations[0].settle([pending for _, pending in self._unsettled])
            except DestinationError as error:
                self.failure = str(error)
                for batch, _ in self._unsettled:
                    self._reject(batch, f"sent, but the vendor's outcome is unknown: {error}")
                self._unsettled = []
                return
            waiting = []
            for (batch, pending), outcome in zip(self._unsettled, outcomes, strict=True):
                if outcome is None:
                    waiting.append((batch, pending))
                else:
                    self._account(batch, outcome)
            last_row = max(batch.last_row for batch, _ in self._unsettled)
            self._unsettled = waiting
            if not waiting:
                self._record(last_row)
            elif waited >= SETTLE_LIMIT_S:
                self.failure = f"{self.vendor} had not finished its batches after {SETTLE_LIMIT_S:.0f}s"
                for batch, _ in waiting:
                    self._reject(batch, f"sent, but the vendor's outcome is unknown: {self.failure}")
                self._unsettled = []
            else:
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, SETTLE_MAX_S)

    def _account(self, batch: PreparedBatch, refused: dict[int, str]) -> None:
        refused = {position: reason for position, reason in refused.items() if 0 <= position < batch.count}
        self.tally.delivered += batch.count - len(refused)
        for position, reason in refused.items():
            self.tally.reject(batch.rows[position], batch.identifiers[position], reason, self.vendor)

    def _reject(self, batch: PreparedBatch, reason: str) -> None:
        for row, identifier in zip(batch.rows, batch.identifiers, strict=True):
            self.tally.reject(row, identifier, reason, self.vendor)

    def _record(self, through: int) -> None:
        if time.monotonic() - self._recorded_at >= self.interval_s:
            stats = Counter(self.stats())
            self.confirm(self.tally.record(through, dict(stats - self._reported)))
            self._reported = stats
            self._recorded_at = time.monotonic()


# How long to wait between asking an asynchronous vendor about its batches, and in all.
SETTLE_FIRST_S, SETTLE_MAX_S, SETTLE_LIMIT_S = 0.05, 5.0, 900.0
