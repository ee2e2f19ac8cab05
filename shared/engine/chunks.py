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
recorded row; a chunk with a final checkpoint just returns it. The interval trades the
cost of a blob write per batch (at Braze's 75 profiles per request, as much CPU as the
requests themselves) against resending, after a crash, what the vendor confirmed in
the last interval: upserts that change nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from destinations import Destination, DestinationError, destination_class
from destinations.base import Pending

from ..config import Connection
from ..http import HttpClient, pacer_for, transport_for
from ..secrets import SecretError
from .planning import load_definitions, now_iso
from .services import Services
from .tally import PreparedBatch, Tally

__all__ = ["export_chunk"]


def export_chunk(task: dict[str, Any], services: Services) -> dict[str, Any]:
    """Export chunk `task["chunk"]` of run `task["run_id"]`; returns its (small) result.

    `task["abandon"]`, when set, is why the destination already failed in this run: the
    chunk's items are then accounted without being sent.
    """
    export_name, run_id, index = task["export"], task["run_id"], task["chunk"]
    runs = services.runs
    done = runs.checkpoint(export_name, run_id, index)
    if done is not None:
        return done
    plan = runs.plan(export_name, run_id, chunk=index)
    chunk = plan["chunks"][index]
    segment = next(s for s in plan["segments"] if s["path"] == chunk["segment"])
    connection, export = load_definitions(plan, services)
    cls = destination_class(connection.type)
    started, clock = now_iso(), time.monotonic()
    prepared, items = runs.prepared(export_name, run_id, index)
    tally = Tally(chunk["segment"])
    resume_after = tally.restore(runs.progress(export_name, run_id, index))
    if not resume_after:
        tally.add_prepared(prepared)  # a record restored above already holds these counts
    sender = _Sender(cls, tally, lambda record: runs.append_progress(export_name, run_id, index, record),
                     services.settings.progress_interval_s)
    sender.failure = task.get("abandon")
    http = None
    if sender.failure is None and prepared["items"]:
        try:
            http = _client(cls, connection, plan["width"])
            credentials = services.secrets.get(connection.secret_name)
            problem = cls.credentials_problem(credentials)
            if problem:
                raise SecretError(f"secret {connection.secret_name!r} {problem}")
            sender.destination = cls(connection, export, segment["columns"], credentials, http)
            sender.http = http
        except SecretError as error:
            sender.failure = f"{cls.SPEC.display_name}: {error}"
    try:
        for line in items:
            batch = PreparedBatch(line)
            if batch.last_row > resume_after:  # progress is recorded at batch ends: batches are whole
                sender.send(batch)
        sender.settle()
    finally:
        if http is not None:
            http.pacer.leave(1 / plan["width"])
    stats = http.stats.as_dict() if http else {}
    requests = {key: tally.requests.get(key, 0) + stats.get(key, 0) for key in set(tally.requests) | set(stats)}
    result = {
        "chunk": index, "segment": chunk["segment"], "rows": tally.rows, "delivered": tally.delivered,
        "rejected": sum(tally.rejected.values()), "skipped": sum(tally.skipped.values()),
        "reasons": {"rejected": dict(tally.rejected), "skipped": dict(tally.skipped)},
        "requests": {key: round(value, 3) for key, value in requests.items()},
        "failure": sender.failure,
        "rejected_files": [path for path in (prepared["invalid_file"],
                                             runs.write_rejected(export_name, run_id, index, tally.rejected_csv))
                           if path],
        "resumed_after_row": resume_after or None,
        "started_at": started, "finished_at": now_iso(), "duration_s": round(time.monotonic() - clock, 3),
    }
    runs.write_checkpoint(export_name, run_id, index, result)
    return result


def _client(cls: type[Destination], connection: Connection, width: int) -> HttpClient:
    pacer = pacer_for(connection.name, float(connection.settings["requests_per_second"]))
    pacer.join(1 / width)  # this activity's share of the connection's rate limit
    return HttpClient(cls.SPEC.display_name, pacer, transport_for(connection.name),
                      timeout=float(connection.settings["timeout_s"]), describe=cls.describe)


class _Sender:
    """Sends prepared batches; after a failure, accounts the rest as not sent."""

    def __init__(self, cls: type[Destination], tally: Tally, confirm: Callable[[dict[str, Any]], None],
                 interval_s: float):
        self.vendor = cls.SPEC.display_name
        self.tally = tally
        self.confirm = confirm  # stores a progress record once the vendor confirmed batches
        self.interval_s = interval_s
        self.destination: Destination | None = None
        self.http: HttpClient | None = None
        self.failure: str | None = None
        self._unsettled: list[tuple[PreparedBatch, Pending]] = []
        self._reported: Counter = Counter()
        self._recorded_at = time.monotonic()

    def send(self, batch: PreparedBatch) -> None:
        """Send one prepared batch; account its rows."""
        self.tally.rows += batch.count
        if self.failure is not None:
            self._reject(batch, f"not sent: {self.failure}")
            return
        try:
            outcome = self.destination.send(batch.keys, batch.items)
        except DestinationError as error:
            self.failure = str(error)
            self._reject(batch, self.failure)
            return
        if isinstance(outcome, Pending):
            self._unsettled.append((batch, outcome))
            if len(self._unsettled) >= self.destination.MAX_UNSETTLED:
                self.settle()
            return
        self._account(batch, outcome)
        self._record(batch.last_row)

    def settle(self) -> None:
        """Wait for the vendor to finish the batches it accepted, and account them."""
        delay, waited = SETTLE_FIRST_S, 0.0
        while self._unsettled:
            try:
                outcomes = self.destination.settle([pending for _, pending in self._unsettled])
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
            stats = Counter(self.http.stats.as_dict())
            self.confirm(self.tally.record(through, dict(stats - self._reported)))
            self._reported = stats
            self._recorded_at = time.monotonic()


# How long to wait between asking an asynchronous vendor about its batches, and in all.
SETTLE_FIRST_S, SETTLE_MAX_S, SETTLE_LIMIT_S = 0.05, 5.0, 900.0
