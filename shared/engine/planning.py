"""Planning a run: validate its definitions, read the segments once, cut chunks, mark duplicates.

The plan is the only step that sees a whole segment. It streams every file once to find
row boundaries (so chunks can be read independently, in parallel) and to decide which
rows repeat an earlier row's identifier: first occurrence wins, across all the export's
segments. Duplicates are written per chunk; the plan itself (`plan.json`) holds blob
names, byte ranges and counts, and the orchestrator receives only its small summary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from destinations import SPECS, destination_class

from ..config import Connection, DefinitionError, Export, parse_connection, parse_export
from ..segments import SegmentError, resolve_columns
from .rows import classify
from .services import Services

__all__ = ["PlanError", "load_definitions", "plan_run"]


class PlanError(Exception):
    """The run cannot start; the message says why and what to change."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
        _cut_chunks(plan, connection, export, services)
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


def _cut_chunks(plan: dict[str, Any], connection: Connection, export: Export, services: Services) -> None:
    destination = destination_class(connection.type)
    identifier = destination.SPEC.identifier
    batch = connection.settings["batch_size"]
    # Whole batches per chunk, so only a chunk's last request is ever partly filled.
    rows_per_chunk = max(batch, math.ceil(services.settings.chunk_rows / batch) * batch)
    reader = services.storage.segments
    seen: set[int] = set()  # hashes of identifiers seen so far (first occurrence wins)
    for path in export.segments:
        info = reader.info(path)
        columns = resolve_columns(path, info.header, export.matching.columns())
        plan["segments"].append({"path": path, "bytes": info.size, "etag": info.etag, "header": info.header,
                                 "columns": columns, "rows": 0})
        segment = plan["segments"][-1]
        width, key_index = len(info.header), columns[identifier]
        chunk = _new_chunk(plan, path, info.data_start, 1)
        duplicates: list[int] = []
        for row in reader.rows(path, info.data_start, info.size):
            verdict = classify(row.fields, width, row.utf8, key_index, identifier, destination)
            if verdict.key is not None:
                fingerprint = hash(verdict.key)
                if fingerprint in seen:
                    duplicates.append(row.number)
                else:
                    seen.add(fingerprint)
            chunk["rows"] += 1
            chunk["end"] = row.end
            if chunk["rows"] == rows_per_chunk:
                _close_chunk(plan, chunk, duplicates, services)
                chunk, duplicates = _new_chunk(plan, path, row.end, row.number + 1), []
        _close_chunk(plan, chunk, duplicates, services)
        segment["rows"] = sum(c["rows"] for c in plan["chunks"] if c["segment"] == path)
    if not any(s["rows"] for s in plan["segments"]):
        raise PlanError(f"the export's segments hold no data rows (only a header): {', '.join(export.segments)}")
    plan["width"] = min(connection.settings["parallel_chunks"], len(plan["chunks"]))


def _new_chunk(plan: dict[str, Any], path: str, start: int, first_row: int) -> dict[str, Any]:
    return {"index": len(plan["chunks"]), "segment": path, "start": start, "end": start, "first_row": first_row,
            "rows": 0, "duplicates": 0}


def _close_chunk(plan: dict[str, Any], chunk: dict[str, Any], duplicates: list[int], services: Services) -> None:
    if chunk["rows"] == 0:
        return
    if duplicates:
        chunk["duplicates"] = len(duplicates)
        services.runs.write_duplicates(plan["export"]["name"], plan["run_id"], chunk["index"], duplicates)
    plan["chunks"].append(chunk)
