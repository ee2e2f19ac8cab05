"""Finishing a run: the report of what was delivered, rejected and skipped, and why.

The report is built from the chunks' results; a chunk whose activity never returned is
read from its checkpoint, and a chunk with neither (its activity failed for good) is
accounted by the chunk's own code sending nothing (confirmed batches delivered, the rest
rejected "not sent" and listed), or, should that fail too, as not processed, row count
from the plan, so the accounting still adds up: for the run's destination, input rows =
delivered + rejected + skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from destinations import destination_class

from .chunks import export_chunk
from .planning import now_iso, stopped_at
from .services import Services
from .tally import REJECTED_HEADER, Tally

__all__ = ["finish_run", "progress"]

log = logging.getLogger(__name__)


def finish_run(task: dict[str, Any], services: Services) -> dict[str, Any]:
    """Write the run's report and merged rejected-rows file; returns a small summary."""
    export_name, run_id = task["export"], task["run_id"]
    runs = services.runs
    plan = runs.plan(export_name, run_id)
    given = [r for r in task.get("results") or [] if isinstance(r, dict) and "chunk" in r]
    # A chunk whose activity failed for good comes as {"chunk", "activity_failed": why}.
    failed = {r["chunk"]: r["activity_failed"] for r in given if "activity_failed" in r}
    results = {r["chunk"]: r for r in given if "activity_failed" not in r}
    for index in range(len(plan["chunks"])):
        if index not in results:
            checkpoint = runs.checkpoint(export_name, run_id, index)
            if checkpoint is None and task.get("settled", True):  # else an activity may still be sending it
                reason = failed.get(index) or task.get("error")
                checkpoint = _accounted_unsent(export_name, run_id, index, reason, index in failed, services)
            if checkpoint is not None:
                results[index] = checkpoint
    ordered = [results.get(c["index"]) or _not_processed(c, task.get("error")) for c in plan["chunks"]]
    if plan["status"] == "planned" and not plan.get("complete", True):  # its last part failed for good
        plan = {**plan, "status": "failed",
                "error": f"planning stopped at {stopped_at(plan)}: the rows before it were exported "
                         "(see the counts), the rest was not read; run again"}
    destination = _destination_report(plan, ordered, task.get("error"))
    destination["rejected_rows_file"] = runs.merge_rejected(
        export_name, run_id, REJECTED_HEADER, [path for r in ordered for path in r.get("rejected_files", [])])
    report = {
        "run_id": run_id, "export": export_name,
        "display_name": plan["export"].get("display_name"),
        "trigger": plan.get("trigger"), "requested_by": plan.get("requested_by"),
        "requested_at": plan.get("requested_at"), "planned_at": plan.get("planned_at"), "finished_at": now_iso(),
        "status": "failed" if plan["status"] == "failed" or destination["status"] == "failed" else "succeeded",
        "error": plan["error"] or destination.get("error"),
        "segments": [{"path": s["path"], "bytes": s["bytes"], "rows": s["rows"],
                      **({"model": s["model"]} if s.get("model") else {})} for s in plan["segments"]],
        "chunks": len(plan["chunks"]),
        "destination": destination,
    }
    report["duration_s"] = _seconds_between(report["requested_at"] or report["planned_at"], report["finished_at"])
    runs.write_report(report)
    return {key: report[key] for key in ("run_id", "export", "status", "error")} | {
        key: destination[key] for key in ("input_rows", "delivered", "rejected", "skipped")}


def _destination_report(plan: dict[str, Any], results: list[dict[str, Any]], error: str | None) -> dict[str, Any]:
    connection = plan["connection"] or {}
    rejected, skipped = Counter(), Counter()
    requests = Counter()
    for result in results:
        rejected.update(result["reasons"]["rejected"])
        skipped.update(result["reasons"]["skipped"])
        requests.update({k: v for k, v in result.get("requests", {}).items() if isinstance(v, (int, float))})
    totals = {key: sum(r[key] for r in results) for key in ("rows", "delivered", "rejected", "skipped")}
    failures = [r["failure"] for r in results if r.get("failure")]
    planned_rows = sum(c["rows"] for c in plan["chunks"])
    starts = [r["started_at"] for r in results if r.get("started_at")]
    ends = [r["finished_at"] for r in results if r.get("finished_at")]
    report = {
        "connection": connection.get("name"), "type": connection.get("type"),
        "target": (plan["export"] or {}).get("target"),
        "status": "failed" if failures or error or plan["status"] == "failed" else "succeeded",
        "error": failures[0] if failures else error,
        "input_rows": planned_rows,
        "delivered": totals["delivered"], "rejected": totals["rejected"], "skipped": totals["skipped"],
        "accounting_ok": planned_rows == totals["delivered"] + totals["rejected"] + totals["skipped"]
        and totals["rows"] == planned_rows,
        "reasons": {"rejected": dict(rejected.most_common()), "skipped": dict(skipped.most_common())},
        "requests": dict(requests),
        "duration_s": _seconds_between(min(starts), max(ends)) if starts and ends else 0.0,
        "warnings": [],
    }
    if connection.get("type") and plan["status"] != "failed":
        report["warnings"] = destination_class(connection["type"]).warnings(totals["delivered"])
        # What preparing the chunks' items noticed (`Destination.notes`), counted over the run.
        notes = Counter()
        for chunk in plan["chunks"]:
            notes.update(chunk.get("notes") or {})
        report["warnings"] += [f"{count:,} row(s): {note}" for note, count in sorted(notes.items())]
        # One file of several that holds only its header (the run fails when all do): an
        # upstream extract that broke off looks just like this.
        empty = [segment for segment in plan["segments"] if plan.get("complete") and not segment["rows"]]
        report["warnings"] += [f"segment {segment['path']} holds no data rows"
                               f"{' (only a header)' if segment.get('header_row', True) else ''}: check that "
                               "upstream wrote it completely" for segment in empty]
        report["warnings"] += plan.get("warnings", [])
    return report


def _accounted_unsent(export: str, run_id: str, index: int, error: str | None, attempted: bool,
                      services: Services) -> dict[str, Any] | None:
    """A chunk without a result (its activity failed for good, or the run stopped before
    it ran: `error`), accounted by the chunk's own code sending nothing: the batches its
    progress records say the vendor confirmed are delivered, its plan's refusals and
    skips are kept, and every other row is rejected "not sent", listed in its
    rejected-rows file; "not confirmed" where its activity ran (`attempted`): batches
    sent after its last progress record may have reached the vendor. None when that
    fails too (then `_not_processed`)."""
    task = {"export": export, "run_id": run_id, "chunk": index, "attempted": attempted,
            "abandon": error or "its chunk activity failed on every attempt"}
    try:
        return export_chunk(task, services)
    except Exception:  # noqa: BLE001 - what failed the activity may fail this too: counted from the plan
        log.warning("chunk %s of run %s could not be accounted from its items", index, run_id, exc_info=True)
        return None


def _not_processed(chunk: dict[str, Any], error: str | None) -> dict[str, Any]:
    reason = f"not processed: {error or 'the chunk activity failed'}"
    return {"chunk": chunk["index"], "rows": chunk["rows"], "delivered": 0, "rejected": chunk["rows"], "skipped": 0,
            "reasons": {"rejected": {reason: chunk["rows"]}, "skipped": {}}, "failure": reason}


def _seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def starting(export: str, run_id: str, requested_at: str | None) -> dict[str, Any]:
    """The progress of a run started whose plan's first part is not stored yet: `progress`'s
    fields, nothing done."""
    return {"run_id": run_id, "export": export, "status": "starting", "requested_at": requested_at,
            "planned_at": None, "updated_at": None, "chunks": 0, "chunks_done": 0, "chunks_sending": 0,
            "plan_complete": False, "input_rows": 0, "rows_done": 0, "delivered": 0, "rejected": 0, "skipped": 0}


def progress(export: str, run_id: str, services: Services) -> dict[str, Any] | None:
    """The report of a finished run, or the progress of a running one; None if unknown."""
    runs = services.runs
    report = runs.report(export, run_id)
    if report is not None:
        return report
    plan = runs.plan(export, run_id)
    if plan is None:
        return None
    done, sending, last_written = runs.chunks_so_far(export, run_id)
    # Counts so far: the finished chunks', and the batches the vendor confirmed to chunks
    # still sending (a chunk can send for the whole run: parallel chunks share the limit),
    # added up as a resumed chunk restores them.
    confirmed = Tally("")
    for records in sending.values():
        confirmed.restore(records)
    return {**starting(export, run_id, plan.get("requested_at")), "status": "running",
            "planned_at": plan["planned_at"],
            # Its files' last write: a run that stopped moving (a local run killed, never
            # resumed) stays "running" here; this tells how long it has been still.
            "updated_at": last_written or plan["planned_at"],
            "chunks": len(plan["chunks"]), "chunks_done": len(done), "chunks_sending": len(sending),
            "plan_complete": plan.get("complete", True),  # else chunks and input_rows are so far
            "input_rows": sum(c["rows"] for c in plan["chunks"]),
            "rows_done": sum(result["rows"] for result in done) + confirmed.rows,
            "delivered": sum(result["delivered"] for result in done) + confirmed.delivered,
            "rejected": sum(result["rejected"] for result in done) + sum(confirmed.rejected.values()),
            "skipped": sum(result["skipped"] for result in done) + sum(confirmed.skipped.values())}
