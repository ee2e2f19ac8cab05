"""Planning a run: validate its definitions, read the segments once, prepare the chunks.

The plan is the only step that sees a whole segment, and it reads it once: it checks
every row, decides which repeat an earlier row's identifier (first occurrence wins,
across all the export's segments), and cuts the rows into chunks of whole batches. For
each chunk it writes the vendor items of its sendable rows, already encoded
(`chunks/<n>.items`), and the rows it refused (`chunks/<n>.invalid.csv`): chunk
activities then only send, in parallel, and no row is parsed or checked twice. The plan
itself (`plan.json`) holds blob names, byte ranges and counts (a chunk's entry: its rows,
items, and the counts and reasons of the rows not sent); the orchestrator receives only
its small summary. Plans of other exports reading the same segment at the same time in
this process share its blocks (`shared.segments.sharing`): a part goes on from the start
of the block where the part before stopped, on the blocks' grid.
"""

from __future__ import annotations

import math
import threading
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from destinations import SPECS, destination_class

from ..config import Connection, DefinitionError, Export, parse_connection, parse_export
from ..memory import return_freed_memory
from ..segments import SegmentError, offset_after, resolve_columns
from ..state import BackgroundWrites
from .chunking import ChunkWriter, chunk_rows, rows_per_chunk
from .classify import classify_block
from .services import Services

if TYPE_CHECKING:
    from .first_seen import FirstSeen

__all__ = ["PlanError", "load_definitions", "plan_next_part", "plan_run"]


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
    """Plan the first part of the run described by `request`; returns the orchestrator's summary.

    A run that was planned before (resumed, or its activity re-executed) keeps its plan,
    provided its segments have not changed since; one whose plan failed is not planned
    again (its chunks' checkpoints belong to that plan): it ends with its report as it was.

    Never raises for a problem of the definitions or the segments: the plan is then
    `failed` with a message, recorded in `plan.json`, and the run ends with a report.
    """
    existing = services.runs.plan(request["export"]["name"], request["run_id"])
    if existing is not None:
        return summary(_check_unchanged(existing, services) if existing["status"] == "planned" else existing)
    plan: dict[str, Any] = {
        "run_id": request["run_id"], "export": request["export"], "connection": request["connection"],
        "trigger": request.get("trigger", "unknown"), "requested_by": request.get("requested_by"),
        "requested_at": request.get("requested_at"), "planned_at": now_iso(),
        "status": "planned", "error": None, "complete": False, "cursor": None,
        "segments": [], "chunks": [], "width": 0,
        "warnings": [],  # what finding the segments' files noticed (a CDM snapshot passed over)
    }
    try:
        connection, export = load_definitions(request, services)
        if connection.consent is None:
            raise PlanError(f'connection "{connection.name}" has no recorded privacy consent: record who agreed '
                            "and when (consent.accepted_by, consent.accepted_at) before exporting through it")
        _begin(plan, export, services)
        _plan_part(plan, connection, export, services)
    except (DefinitionError, PlanError, SegmentError) as error:
        plan["status"], plan["error"], plan["complete"] = "failed", str(error), True
        plan["chunks"] = []
    # Only where no plan is stored yet: another execution of this activity (they run at
    # least once) that planned the same part and ended first may have had its next part
    # stored over it since; this one's first part must not take the plan back.
    if not services.runs.write_plan(plan, new=True):
        return summary(services.runs.plan(request["export"]["name"], request["run_id"]))
    return summary(plan)


def plan_next_part(task: dict[str, Any], services: Services) -> dict[str, Any]:
    """Plan the next part of run `task["run_id"]`, whose earlier chunks may be sending meanwhile.

    A problem found now (a malformed row far into a file, a segment replaced since the
    first part) fails the plan, but keeps the chunks planned before: they may have been
    sent already, and the report accounts for them; the error says from where on the
    rows were not read.
    """
    plan, version = services.runs.plan_and_etag(task["export"], task["run_id"])
    if plan is None:
        raise PlanError(f"run {task['run_id']} of export {task['export']} has no plan")
    if plan["status"] != "planned" or plan["complete"]:
        return summary(plan)
    try:
        connection, export = load_definitions(plan, services)
        _plan_part(plan, connection, export, services)
    except (DefinitionError, PlanError, SegmentError) as error:
        plan["status"], plan["complete"] = "failed", True
        plan["error"] = (f"{error}; the rows before {stopped_at(plan)} were planned and exported "
                         "(see the counts), the rest was not read: correct the file and run again")
    # Only over the version this part started from: an execution of the same part that ran
    # again (activities run at least once) and ended later must not take the plan back.
    if not services.runs.write_plan(plan, etag=version):
        return summary(services.runs.plan(task["export"], task["run_id"]))
    return summary(plan)


def stopped_at(plan: dict[str, Any]) -> str:
    """Where the plan's next part starts, for a message: "row N of <segment>"."""
    cursor = plan["cursor"]
    return f"row {cursor['row']} of {plan['segments'][cursor['segment']]['path']}"


def summary(plan: dict[str, Any]) -> dict[str, Any]:
    """What the orchestrator needs of a plan: small, no rows, no secrets."""
    return {"run_id": plan["run_id"], "export": plan["export"]["name"], "status": plan["status"],
            "error": plan["error"], "complete": plan.get("complete", True), "chunks": len(plan["chunks"]),
            "width": plan["width"], "rows": sum(chunk["rows"] for chunk in plan["chunks"])}


def _check_unchanged(plan: dict[str, Any], services: Services) -> dict[str, Any]:
    """A resumed run continues only on the very segments it planned (same ETag). Else it
    fails, its chunks kept: those that finished are reported from their checkpoints, the
    others' rows rejected "not sent", for the reason given (the report's own accounting)."""
    for segment in plan["segments"]:
        etag = services.storage.segments.etag(segment["path"])
        reason = "it was removed" if etag is None else "it changed since the run was planned"
        if etag != segment["etag"]:
            plan = {**plan, "status": "failed", "complete": True,
                    "error": f"cannot resume run {plan['run_id']}: segment {segment['path']}: {reason}; "
                             "start a new run instead"}
            services.runs.write_plan(plan)
            break
    return plan


def _begin(plan: dict[str, Any], export: Export, services: Services) -> None:
    """Every segment readable, every mapped column present, before any work."""
    reader = services.storage.segments
    for path in export.segments:
        found = reader.files(path)  # the file, or the partitions of a Customer Insights table
        plan["warnings"] += found.warnings
        for info in found.files:
            columns = resolve_columns(info.path, info.header, export.matching.columns())
            plan["segments"].append({"path": info.path, "bytes": info.size, "etag": info.etag, "header": info.header,
                                     "columns": columns, "data_start": info.data_start, "rows": 0,
                                     "header_row": info.header_row, "model": found.model})
    first = plan["segments"][0]
    # Where the next part starts, and what the first block told of the rows to expect.
    # `block_offset`, `block_row`: the start of the block holding the cursor, where the next
    # part starts reading (so that it reads the blocks other plans of the file read).
    plan["cursor"] = {"segment": 0, "offset": first["data_start"], "row": 1, "parts": 0,
                      "block_offset": first["data_start"], "block_row": 1,
                      "rows_per_chunk": None, "expected_rows": None}


def _plan_part(plan: dict[str, Any], connection: Connection, export: Export, services: Services) -> None:
    """Read on from the plan's cursor, chunk by chunk, until the part is long enough or the
    segments end; then `plan` says where the next part starts (or that it is complete)."""
    key = (plan["export"]["name"], plan["run_id"])
    cursor = plan["cursor"]
    first_seen = _first_seen(key, plan, connection, services)
    with BackgroundWrites() as writes:  # the chunks' files are written while the next rows are read
        first_seen = _read_part(plan, connection, export, services, writes, first_seen)
    return_freed_memory()  # what the part held, freed among what lives on (shared/memory.py)
    for segment in plan["segments"]:
        segment["rows"] = sum(c["rows"] for c in plan["chunks"] if c["segment"] == segment["path"])
    cursor["parts"] += 1
    plan["complete"] = cursor["segment"] == len(plan["segments"])
    if cursor["parts"] == 1:  # fixed once, before any chunk is sent: the orchestrator's fan-out
        expected = math.ceil(cursor["expected_rows"] / cursor["rows_per_chunk"]) if cursor["expected_rows"] else 1
        chunks = len(plan["chunks"]) if plan["complete"] else max(expected, len(plan["chunks"]))
        plan["width"] = max(1, min(connection.settings["parallel_chunks"], chunks))
    if plan["complete"]:
        _first_seen_cache.pop(key, None)
        if not any(s["rows"] for s in plan["segments"]):
            header = " (only a header)" if any(s.get("header_row", True) for s in plan["segments"]) else ""
            raise PlanError(f"the export's segments hold no data rows{header}: {', '.join(export.segments)}")
    else:  # kept for the next part, if this process plans it: valid only for the plan written next
        _keep_first_seen(key, cursor["parts"], first_seen)


def _read_part(plan: dict[str, Any], connection: Connection, export: Export, services: Services,
               writes: BackgroundWrites, first_seen: FirstSeen | None) -> FirstSeen:
    """One part of the plan: read each segment once, row block by row block, into chunks (see
    the module docstring), from the cursor on; returns the dedupe state for the next part."""
    from .first_seen import FirstSeen  # numpy: loaded by the processes that plan, not by the senders

    cls = destination_class(connection.type)
    identifier = cls.SPEC.identifier
    batch, width = connection.settings["batch_size"], connection.settings["parallel_chunks"]
    full_only = services.settings.chunk_rows is not None or width == 1  # see chunking.chunk_rows
    reader, cursor = services.storage.segments, plan["cursor"]
    chunks_in_part, part_chunks = 0, 1 if cursor["parts"] == 0 else None
    while cursor["segment"] < len(plan["segments"]):
        segment = plan["segments"][cursor["segment"]]
        path, columns = segment["path"], segment["columns"]
        columns_count, key_index = len(segment["header"]), columns[identifier]
        destination = cls(connection, export, columns)  # no credentials: it prepares items, sends nothing
        chunk = ChunkWriter(plan, path, cursor["offset"], cursor["row"], destination, services, writes)
        limit = None  # the rows of the chunk being filled, decided once the first block tells the row size
        # A plan stored by an earlier version has no block start: it reads from the cursor itself, unshared.
        blocks = reader.blocks(path, cursor.get("block_offset", cursor["offset"]), segment["bytes"],
                               first_row=cursor.get("block_row", cursor["row"]), etag=segment["etag"],
                               shared_by=f"{plan['export']['name']}/{plan['run_id']}")
        with closing(blocks):  # a part that ends mid-segment stops the segment's download
            for block in blocks:
                if cursor["rows_per_chunk"] is None:  # the first block tells how many rows to expect
                    total_bytes = sum(s["bytes"] - s["data_start"] for s in plan["segments"])
                    expected = total_bytes * len(block.rows) / max(1, block.end - block.start)
                    cursor["expected_rows"] = int(expected)
                    cursor["rows_per_chunk"] = rows_per_chunk(services.settings.chunk_rows, batch, width, expected)
                    first_seen = FirstSeen(int(expected))
                if part_chunks is None:
                    part_chunks = max(1, math.ceil(cursor["expected_rows"] / PARTS / cursor["rows_per_chunk"]))
                if limit is None:
                    limit = chunk_rows(plan, chunk.start, full_only, batch)
                keys, problems = classify_block(block, columns_count, key_index, identifier, cls)
                index = max(0, cursor["row"] - block.first_row)  # rows before it: an earlier part's
                while index < len(block.rows):
                    take = min(len(block.rows) - index, limit - chunk.rows)
                    # Keys are remembered only as their rows are taken: the rest of the block
                    # may belong to the next part.
                    firsts = first_seen.first(keys[index:index + take])
                    chunk.take(block, index, index + take, columns_count, key_index, keys, firsts, problems)
                    index += take
                    if chunk.rows == limit:
                        end = offset_after(block, index)
                        chunk.close(end)
                        cursor["offset"], cursor["row"] = end, block.first_row + index
                        chunks_in_part += 1
                        if chunks_in_part >= part_chunks:
                            if end >= segment["bytes"]:  # the segment ended with this chunk
                                _next_segment(plan)
                            elif index < len(block.rows):
                                cursor["block_offset"], cursor["block_row"] = block.start, block.first_row
                            else:
                                cursor["block_offset"], cursor["block_row"] = end, cursor["row"]
                            return first_seen
                        chunk = ChunkWriter(plan, path, end, cursor["row"], destination, services, writes)
                        limit = chunk_rows(plan, end, full_only, batch)
                del block, keys, problems  # freed before the next block is parsed, not after
        chunk.close(segment["bytes"])
        _next_segment(plan)
        chunks_in_part += 1 if chunk.rows else 0
        if part_chunks is not None and chunks_in_part >= part_chunks:
            break
    return first_seen or FirstSeen()


def _next_segment(plan: dict[str, Any]) -> None:
    cursor = plan["cursor"]
    cursor["segment"] += 1
    if cursor["segment"] < len(plan["segments"]):
        cursor["offset"], cursor["row"] = plan["segments"][cursor["segment"]]["data_start"], 1
        cursor["block_offset"], cursor["block_row"] = cursor["offset"], 1


def _keep_first_seen(key: tuple[str, str], parts: int, first_seen: FirstSeen) -> None:
    with _cache_lock:
        while len(_first_seen_cache) >= CACHED_PLANS:  # a run that died leaves its state behind
            _first_seen_cache.pop(next(iter(_first_seen_cache)))
        _first_seen_cache[key] = (parts, first_seen)


def _first_seen(key: tuple[str, str], plan: dict[str, Any], connection: Connection,
                services: Services) -> FirstSeen | None:
    """The dedupe state as the plan's earlier parts left it: kept in this process if it
    planned them, else rebuilt by reading the rows before the cursor again (keys only)."""
    cursor = plan["cursor"]
    with _cache_lock:
        parts, first_seen = _first_seen_cache.pop(key, (None, None))
    if parts == cursor["parts"]:
        return first_seen
    if cursor["parts"] == 0:
        return None  # sized by the first block
    from .first_seen import FirstSeen

    cls = destination_class(connection.type)
    identifier = cls.SPEC.identifier
    first_seen = FirstSeen(cursor["expected_rows"])
    reader = services.storage.segments
    for number, segment in enumerate(plan["segments"][:cursor["segment"] + 1]):
        end = cursor["offset"] if number == cursor["segment"] else segment["bytes"]
        width, key_index = len(segment["header"]), segment["columns"][identifier]
        for block in reader.blocks(segment["path"], segment["data_start"], end, etag=segment["etag"]):
            first_seen.first(classify_block(block, width, key_index, identifier, cls)[0])
    return first_seen


# The dedupe state of plans this process is reading, between their parts: {(export, run
# id): (parts planned, state)}. Taken out while a part runs, so a part that fails midway
# leaves nothing half-updated behind.
_first_seen_cache: dict[tuple[str, str], tuple[int, FirstSeen]] = {}
_cache_lock = threading.Lock()
CACHED_PLANS = 8  # the oldest is forgotten (and rebuilt if its run goes on): ~100 MB each at 10M rows

# A plan is read in parts so that the first chunks are sent while the rest is read: the
# first part is one chunk, each later one about 1/PARTS of the expected rows. More parts
# start sending sooner; each part costs an activity and a plan.json write, and, when it
# runs in another process than the part before, reading the earlier rows again for their keys.
PARTS = 8
