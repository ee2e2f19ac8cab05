"""Exporting one chunk of a segment to the run's destination: the work of one activity.

Every row of the chunk ends in exactly one of three counts: delivered (the vendor
confirmed it), rejected (refused by our checks or by the vendor, with the reason; listed
in the chunk's rejected-rows file), skipped (a duplicate of an earlier row, or no
identifier). When the destination fails (wrong key, unknown audience, a vendor down for
longer than the retry policy), the rest of the chunk is still read and its sendable rows
are rejected as "not sent", so the run's accounting stays exact and the rejected-rows
file lists every profile that still has to reach the vendor.

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

import csv
import io
import time
from collections import Counter
from typing import Any

from destinations import Destination, DestinationError, RowRejected, destination_class

from ..http import HttpClient, pacer_for, session_for
from ..secrets import SecretError
from .planning import load_definitions, now_iso
from .rows import classify
from .services import Services

__all__ = ["REJECTED_HEADER", "Tally", "export_chunk"]

REJECTED_HEADER = "segment,row,identifier,reason,refused_by"


class Tally:
    """The counts and reasons of one chunk, and its rejected rows as CSV.

    `record(through)` returns what was accounted since the previous record; `restore`
    adds records back, so a chunk can resume where its last confirmed batch ended.
    """

    def __init__(self, segment: str):
        self.segment = segment
        self.rows = self.delivered = 0
        self.rejected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # request statistics of earlier attempts
        self._rejected_rows = io.StringIO()
        self._writer = csv.writer(self._rejected_rows, lineterminator="\r\n")
        self._mark = self._snapshot()

    def reject(self, row: int, identifier: str, reason: str, refused_by: str) -> None:
        self.rejected[reason] += 1
        self._writer.writerow((self.segment, row, identifier, reason, refused_by))

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def rejected_csv(self) -> str:
        return self._rejected_rows.getvalue()

    def _snapshot(self) -> tuple[int, int, Counter, Counter, int]:
        return self.rows, self.delivered, Counter(self.rejected), Counter(self.skipped), self._rejected_rows.tell()

    def record(self, through: int, requests: dict[str, Any]) -> dict[str, Any]:
        """What was accounted since the last record, through row `through`."""
        rows, delivered, rejected, skipped, offset = self._mark
        self._mark = self._snapshot()
        return {"through": through, "rows": self.rows - rows, "delivered": self.delivered - delivered,
                "rejected": dict(self.rejected - rejected), "skipped": dict(self.skipped - skipped),
                "rejected_rows": self._rejected_rows.getvalue()[offset:], "requests": requests}

    def restore(self, records: list[dict[str, Any]]) -> int:
        """Add earlier records back; returns the last row they cover (0 if none)."""
        for record in records:
            self.rows += record["rows"]
            self.delivered += record["delivered"]
            self.rejected.update(record["rejected"])
            self.skipped.update(record["skipped"])
            self.requests.update(record["requests"])
            self._rejected_rows.write(record["rejected_rows"])
        self._mark = self._snapshot()
        return records[-1]["through"] if records else 0


def export_chunk(task: dict[str, Any], services: Services) -> dict[str, Any]:
    """Export chunk `task["chunk"]` of run `task["run_id"]`; returns its (small) result.

    `task["abandon"]`, when set, is why the destination already failed in this run: the
    chunk's rows are then accounted without being sent.
    """
    export_name, run_id, index = task["export"], task["run_id"], task["chunk"]
    runs = services.runs
    done = runs.checkpoint(export_name, run_id, index)
    if done is not None:
        return done
    plan = runs.plan(export_name, run_id)
    chunk = plan["chunks"][index]
    segment = next(s for s in plan["segments"] if s["path"] == chunk["segment"])
    connection, export = load_definitions(plan, services)
    cls = destination_class(connection.type)
    started, clock = now_iso(), time.monotonic()
    tally = Tally(chunk["segment"])
    resume_after = tally.restore(runs.progress(export_name, run_id, index))
    sender = _Sender(cls, connection.settings["batch_size"], tally,
                     lambda record: runs.append_progress(export_name, run_id, index, record),
                     services.settings.progress_interval_s)
    sender.failure = task.get("abandon")
    http = None
    if sender.failure is None:
        try:
            http = _client(cls, connection, plan["width"])
            credentials = services.secrets.get(connection.secret_name)
            problem = cls.credentials_problem(credentials)
            if problem:
                raise SecretError(f"secret {connection.secret_name!r} {problem}")
            sender.destination = cls(connection, export, credentials, http, segment["columns"])
            sender.http = http
        except SecretError as error:
            sender.failure = f"{cls.SPEC.display_name}: {error}"
    try:
        _read_rows(services, plan, chunk, segment, cls, sender, tally, resume_after)
        sender.flush()
    finally:
        if http is not None:
            http.pacer.leave(1 / plan["width"])
    rejected_file = None
    if tally.rejected:
        rejected_file = runs.write_rejected(export_name, run_id, index, tally.rejected_csv)
    stats = http.stats.as_dict() if http else {}
    requests = {key: tally.requests.get(key, 0) + stats.get(key, 0) for key in set(tally.requests) | set(stats)}
    result = {
        "chunk": index, "segment": chunk["segment"], "rows": tally.rows, "delivered": tally.delivered,
        "rejected": sum(tally.rejected.values()), "skipped": sum(tally.skipped.values()),
        "reasons": {"rejected": dict(tally.rejected), "skipped": dict(tally.skipped)},
        "requests": {key: round(value, 3) for key, value in requests.items()},
        "failure": sender.failure, "rejected_file": rejected_file, "resumed_after_row": resume_after or None,
        "started_at": started, "finished_at": now_iso(), "duration_s": round(time.monotonic() - clock, 3),
    }
    runs.write_checkpoint(export_name, run_id, index, result)
    return result


def _client(cls: type[Destination], connection: Any, width: int) -> HttpClient:
    pacer = pacer_for(connection.name, float(connection.settings["requests_per_second"]))
    pacer.join(1 / width)  # this activity's share of the connection's rate limit
    timeout = (min(10.0, connection.settings["timeout_s"]), float(connection.settings["timeout_s"]))
    return HttpClient(cls.SPEC.display_name, pacer, session_for(connection.name), timeout=timeout,
                      describe=cls.describe)


def _read_rows(services: Services, plan: dict[str, Any], chunk: dict[str, Any], segment: dict[str, Any],
               cls: type[Destination], sender: _Sender, tally: Tally, resume_after: int) -> None:
    identifier = cls.SPEC.identifier
    key_index = segment["columns"][identifier]
    width = len(segment["header"])
    duplicates = (services.runs.duplicates(plan["export"]["name"], plan["run_id"], chunk["index"])
                  if chunk["duplicates"] else set())
    for row in services.storage.segments.rows(chunk["segment"], chunk["start"], chunk["end"],
                                              first_row=chunk["first_row"]):
        if row.number <= resume_after:
            continue  # accounted by a progress record of an earlier attempt
        tally.rows += 1
        verdict = classify(row.fields, width, row.utf8, key_index, identifier, cls)
        raw = row.fields[key_index] if key_index < len(row.fields) else ""
        if verdict.rejected:
            tally.reject(row.number, raw, verdict.rejected, "export")
        elif verdict.skipped:
            tally.skip(verdict.skipped)
        elif row.number in duplicates:
            tally.skip("duplicate of an earlier row")
        else:
            sender.add(row.number, raw, verdict.key, row.fields)


class _Sender:
    """Builds batches and sends them; after a failure, accounts the rest as not sent."""

    def __init__(self, cls: type[Destination], batch_size: int, tally: Tally, confirm, interval_s: float):
        self.vendor = cls.SPEC.display_name
        self.batch_size = batch_size
        self.tally = tally
        self.confirm = confirm  # stores a progress record once the vendor confirmed a batch
        self.interval_s = interval_s
        self._recorded_at = time.monotonic()
        self.destination: Destination | None = None
        self.http: HttpClient | None = None
        self.failure: str | None = None
        self._rows: list[tuple[int, str]] = []
        self._items: list[Any] = []
        self._reported: Counter = Counter()

    def add(self, number: int, raw: str, key: str, fields: list[str]) -> None:
        if self.failure is not None:
            self.tally.reject(number, raw, f"not sent: {self.failure}", self.vendor)
            return
        try:
            item = self.destination.item(key, fields)
        except RowRejected as refusal:  # our check of a field the vendor would refuse
            self.tally.reject(number, raw, refusal.reason, "export")
            return
        self._rows.append((number, raw))
        self._items.append(item)
        if len(self._items) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._items:
            return
        rows, items = self._rows, self._items
        self._rows, self._items = [], []
        try:
            refused = self.destination.send(items)
        except DestinationError as error:
            self.failure = str(error)
            for number, raw in rows:
                self.tally.reject(number, raw, self.failure, self.vendor)
            return
        for position, (number, raw) in enumerate(rows):
            reason = refused.get(position)
            if reason is None:
                self.tally.delivered += 1
            else:
                self.tally.reject(number, raw, reason, self.vendor)
        if time.monotonic() - self._recorded_at >= self.interval_s:
            stats = Counter(self.http.stats.as_dict())
            self.confirm(self.tally.record(rows[-1][0], dict(stats - self._reported)))
            self._reported = stats
            self._recorded_at = time.monotonic()
