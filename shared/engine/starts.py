"""Starting runs: run ids, the orchestration instance of an export, the run request.

One export runs at most once at a time: its orchestration instance id is derived from
the export name, so a second start while one is running is refused (409) rather than
racing the first on the same audience. A local run (`cli.py run`, `runner.holds`) holds
the export with a blob lease: the Function App does not start one while it is held, and
local runs wait for each other; a local run cannot see an orchestration running in
Azure (its state is the Durable host's), so do not run locally against the storage of a
deployed app while it exports the same export.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from .planning import now_iso
from .services import Services

__all__ = ["UnknownExport", "UnknownRun", "check_resumable", "instance_id", "looks_like_run_id", "new_run_id",
           "run_not_found", "run_request"]


class UnknownExport(KeyError):
    """No export of that name is defined."""


class UnknownRun(LookupError):
    """No run of that id to resume; the message lists the export's latest runs."""


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: UTC start time, then random hex."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def instance_id(export_name: str) -> str:
    return f"export-{export_name}"


def run_request(export_name: str, *, trigger: str, requested_by: str | None, services: Services | None = None,
                export: dict[str, Any] | None = None, connection: dict[str, Any] | None = None,
                run_id: str | None = None) -> dict[str, Any]:
    """The orchestration input of a run: documents (from storage unless given), no secrets.

    A new run id unless `run_id` names a run to resume. Raises UnknownExport when the
    export is not defined in storage.
    """
    if export is None:
        export = services.definitions.export_document(export_name)
        if export is None:
            raise UnknownExport(f'unknown export "{export_name}"')
        connection = services.definitions.connection_document(str(export.get("connection")))
    return {"run_id": run_id or new_run_id(), "export": export, "connection": connection, "trigger": trigger,
            "requested_by": requested_by, "requested_at": now_iso()}


def check_resumable(export_name: str, run_id: str, services: Services) -> None:
    """Raise UnknownRun unless `run_id` is a run of the export that was planned (so it can
    go on): resuming a mistyped id started a new run under that id, sending every row again."""
    if looks_like_run_id(run_id) and services.runs.plan(export_name, run_id) is not None:
        return
    raise UnknownRun(f'export "{export_name}" has no run "{run_id}" to resume' + run_not_found(
        export_name, run_id, services))


def run_not_found(export_name: str, run_id: str, services: Services) -> str:
    """The end of a message about a run the export has no plan of: why, and its latest runs."""
    run_ids = services.runs.run_ids(export_name)
    if run_id in run_ids:  # files, but no plan: the first part is being planned, or failed before storing it
        return "; it has no plan yet (its first part is being planned, or failed before it was stored)"
    return f"; its latest runs: {', '.join(run_ids[:5])}" if run_ids else "; it has no runs yet"


def looks_like_run_id(text: str) -> bool:
    """What run ids look like (`new_run_id`), loosely: a part of a path in storage, so no
    "/" nor "..", checked before it is used as one."""
    return _RUN_ID.fullmatch(text) is not None


_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,79}")
