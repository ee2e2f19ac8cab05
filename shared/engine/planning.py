"""Planning a run: validate its definitions, read the segments once, prepare the chunks.

The plan is the only step that sees a whole segment, and it reads it once: it checks
every row, decides which repeat an earlier row's identifier (first occurrence wins,
across all the export's segments), and cuts the rows into chunks of whole batches. For
each chunk it writes the vendor items of its sendable rows, already encoded
(`chunks/<n>.items`), and the count and reasons of the others (`chunks/<n>.prepared.json`,
`chunks/<n>.invalid.csv`): chunk activities then only send, in parallel, and no row is
parsed or checked twice. The plan itself (`plan.json`) holds blob names, byte ranges and
counts; the orchestrator receives only its small summary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from destinations import SPECS, Destination, RowRejected, destination_class

from ..config import Connection, DefinitionError, Export, parse_connection, parse_export
from ..segments import Block, SegmentError, SegmentInfo, resolve_columns
from ..state import BackgroundWrites
from .rows import FirstSeen, classify_block
from .services import Services
from .tally import Tally, batch_line

__all__ = ["PlanError", "load_definitions", "plan_run"]


class PlanError(Exception):
    """The run cannot start; the message says why and what to change."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def load_definitions(plan_or_request: dict[str, Any], services: Services) -> tuple[Connection, Export]:
    """The run's connection and export, validated again (definitions are validated on read)."""
    allow_local = services.settings.allow_local_endpoints
    connections = {}
    if plan_or_request.get("connection") is not None:  # None: the starter found no such connection
        connection = parse_connection(plan_or_request["connection"], SPECS, allow_local=allow_local)
        connections[connection.name] = connection
    export = parse_export(plan_or_request["export"], connections, SPECS)
    return connections[export.connection], export


def plan_run(request: dict[str, Any], services: Services) -> dict[str, Any]:
    """Plan the run described by `request`; returns the orchestrator's summary of the plan.

    A run that was planned before (resumed, or its activity re-executed) keeps its plan,
    provided its segments have not changed since.

    Never raises for a problem of the definitions or the segments: the plan is then
    `failed` with a message, recorded in `plan.json`, and the run ends with a report.
    """
    existing = services.runs.plan(request["export"]["name"], request["run_id"])
    if existing is not None and existing["status"] == "planned":
        return summary(_check_unchanged(existing, services))
    plan: dict[str, Any] = {
        "run_id": request["run_id"], "export": request["export"], "connection": request["connection"],
        "trigger": request.get("trigger", "unknown"), "requested_by": request.get("requested_by"),
        "requested_at": request.get("requested_at"), "planned_at": now_iso(),
        "status": "planned", "error": None, "segments": [], "chunks": [], "width": 0,
    }
    try:
        connection, export = load_definitions(request, services)
        if connection.consent is None:
            raise PlanError(f'connection "{connection.name}" has no recorded privacy consent: record who agreed '
                            "and when (consent.accepted_by, consent.accepted_at) before exporting through it")
        _prepare_chunks(plan, connection, export, services)
    except (DefinitionError, PlanError, SegmentError) as error:
        plan["status"], plan["error"] = "failed", str(error)
        plan["chunks"] = []
    services.runs.write_plan(plan)
    return summary(plan)


def summary(plan: dict[str, Any]) -> dict[str, Any]:
    """What the orchestrator needs of a plan: small, no rows, no secrets."""
    return {"run_id": plan["run_id"], "export": plan["export"]["name"], "status": plan["status"],
            "error": plan["error"], "chunks": len(plan["chunks"]), "width": plan["width"],
            "rows": sum(chunk["rows"] for chunk in plan["chunks"])}


def _check_unchanged(plan: dict[str, Any], services: Services) -> dict[str, Any]:
    """A resumed run continues only on the very segments it planned (same ETag)."""
    for segment in plan["segments"]:
        try:
            etag = services.storage.segments.info(segment["path"]).etag
        except SegmentError as error:
            etag, reason = None, str(error)
        else:
            reason = "it changed since the run was planned"
        if etag != segment["etag"]:
            plan = {**plan, "status": "failed", "chunks": [],
                    "error": f"cannot resume run {plan['run_id']}: segment {segment['path']}: {reason}; "
                             "start a new run instead"}
            services.runs.write_plan(plan)
            break
    return plan


def _prepare_chunks(plan: dict[str, Any], connection: Connection, export: Export, services: Services) -> None:
    reader = services.storage.segments
    # Every segment readable, every mapped column present, before any work.
    infos = [reader.info(path) for path in export.segments]
    mapped = [resolve_columns(info.path, info.header, export.matching.columns()) for info in infos]
    with BackgroundWrites() as writes:  # the chunks' files are written while the next rows are read
        _read_segments(plan, connection, export, list(zip(infos, mapped, strict=True)), services, writes)
    if not any(s["rows"] for s in plan["segments"]):
        raise PlanError(f"the export's segments hold no data rows (only a header): {', '.join(export.segments)}")
    plan["width"] = min(connection.settings["parallel_chunks"], len(plan["chunks"]))


def _read_segments(plan: dict[str, Any], connection: Connection, export: Export,
                   segments: list[tuple[SegmentInfo, dict[str, int]]], services: Services,
                   writes: BackgroundWrites) -> None:
    """Read each segment once, row block by row block, into chunks (see the module docstring)."""
    cls = destination_class(connection.type)
    identifier = cls.SPEC.identifier
    batch, width = connection.settings["batch_size"], connection.settings["parallel_chunks"]
    reader = services.storage.segments
    total_bytes = sum(info.size - info.data_start for info, _ in segments)
    rows_per_chunk, first_seen = None, FirstSeen()
    for info, columns in segments:
        path = info.path
        plan["segments"].append({"path": path, "bytes": info.size, "etag": info.etag, "header": info.header,
                                 "columns": columns, "rows": 0})
        columns_count, key_index = len(info.header), columns[identifier]
        destination = cls(connection, export, columns)  # no credentials: it prepares items, sends nothing
        chunk = _ChunkWriter(plan, path, info.data_start, 1, batch, services, writes)
        for block in reader.blocks(path, info.data_start, info.size):
            if rows_per_chunk is None:  # the first block tells how many rows to expect
                estimated_rows = total_bytes * len(block.rows) / max(1, block.end - block.start)
                rows_per_chunk = _rows_per_chunk(services.settings.chunk_rows, batch, width, estimated_rows)
                first_seen = FirstSeen(int(estimated_rows))
            keys, problems = classify_block(block, columns_count, key_index, identifier, cls)
            firsts = first_seen.first(keys)
            index = 0
            while index < len(block.rows):
                take = min(len(block.rows) - index, rows_per_chunk - chunk.rows)
                chunk.take(block, index, index + take, key_index, keys, firsts, problems, destination)
                index += take
                if chunk.rows == rows_per_chunk:
                    end = reader.offset_after(block, index)
                    chunk.close(end)
                    chunk = _ChunkWriter(plan, path, end, block.first_row + index, batch, services, writes)
        chunk.close(info.size)
        plan["segments"][-1]["rows"] = sum(c["rows"] for c in plan["chunks"] if c["segment"] == path)


def _rows_per_chunk(configured: int | None, batch: int, width: int, estimated_rows: float) -> int:
    """Rows per chunk: CHUNK_ROWS if set; else enough chunks for the fan-out width, within
    MIN_CHUNK_ROWS and MAX_CHUNK_ROWS. Always whole batches, so only a chunk's last request
    is ever partly filled."""
    rows = configured or min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, math.ceil(estimated_rows / width)))
    return max(batch, math.ceil(rows / batch) * batch)


# Bounds of automatic chunk sizes: a chunk activity has a fixed cost (a dozen blob
# operations), so tiny chunks waste it; a huge one holds an activity and its memory long.
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 10_000, 100_000


class _ChunkWriter:
    """Collects one chunk: its sendable rows as encoded batches, the others as counts and reasons."""

    def __init__(self, plan: dict[str, Any], segment: str, start: int, first_row: int, batch_size: int,
                 services: Services, writes: BackgroundWrites):
        self.plan, self.segment, self.start, self.first_row = plan, segment, start, first_row
        self.batch_size, self.services, self.writes = batch_size, services, writes
        self.index = len(plan["chunks"])
        self.rows = self.items = 0
        self.batches = services.runs.items_writer(plan["export"]["name"], plan["run_id"], self.index, writes)
        self._rows: list[int] = []
        self._keys: list[str] = []
        self._identifiers: list[str] = []
        self._items: list[Any] = []
        self._destination: Destination | None = None
        self.tally = Tally(segment)

    def take(self, block: Block, begin: int, end: int, key_index: int, keys: list[str | None], firsts: list[bool],
             problems: dict[int, tuple[str, str]], destination: Destination) -> None:
        """Account rows [begin, end) of `block`: an item line for each sendable one."""
        rows, number = block.rows, block.first_row
        self._destination = destination
        for index in range(begin, end):
            key = keys[index]
            if key is None:
                kind, reason = problems[index]
                if kind == "skipped":
                    self.tally.skip(reason)
                else:
                    self.tally.reject(number + index, _raw(rows[index], key_index), reason, "export")
            elif not firsts[index]:
                self.tally.skip("duplicate of an earlier row")
            else:
                fields = rows[index]
                try:
                    item = destination.item(key, fields)
                except RowRejected as refusal:  # a field the vendor would refuse
                    self.tally.reject(number + index, fields[key_index], refusal.reason, "export")
                    continue
                self._rows.append(number + index)
                self._keys.append(key)
                self._identifiers.append(fields[key_index])
                self._items.append(item)
                if len(self._items) == self.batch_size:
                    self._close_batch()
        self.rows += end - begin

    def _close_batch(self) -> None:
        if self._items:
            self.batches.write(batch_line(self._rows, self._keys, self._identifiers,
                                          self._destination.encode_batch(self._items)))
            self.items += len(self._items)
            self._rows, self._keys, self._identifiers, self._items = [], [], [], []

    def close(self, end: int) -> None:
        self._close_batch()
        if self.rows == 0:
            return
        index = self.index
        self.batches.close()
        runs, name, run_id = self.services.runs, self.plan["export"]["name"], self.plan["run_id"]
        invalid = self.tally.rejected_csv
        self.writes.submit(runs.write_rejected, name, run_id, index, invalid, "invalid")
        self.writes.submit(runs.write_prepared, name, run_id, index, {
            "rows": self.rows, "items": self.items, "rejected": dict(self.tally.rejected),
            "skipped": dict(self.tally.skipped),
            "invalid_file": runs.rejected_path(name, run_id, index, "invalid") if invalid else None})
        self.plan["chunks"].append({"index": index, "segment": self.segment, "start": self.start, "end": end,
                                    "first_row": self.first_row, "rows": self.rows, "items": self.items})


def _raw(row: list[str], key_index: int) -> str:
    return row[key_index] if key_index < len(row) else ""
