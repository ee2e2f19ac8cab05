"""Checking an export before it runs: what its run would stop at, found without sending.

A run's plan refuses to start on definitions that do not validate, a connection without
recorded consent, a segment that is missing or lacks a mapped column; its first request
fails on a secret that is missing or lacks a field. Each of these takes a run (and, on a
schedule, a night) to find. `check_export` asks the same questions of storage and Key
Vault, with the same code the run uses, and sends nothing to the vendor: whether the
vendor takes the credentials (a revoked key, an audience deleted since) is still only
known by running.
"""

from __future__ import annotations

from typing import Any

from destinations import destination_class

from ..config import DefinitionError
from ..secrets import SecretError
from ..segments import SegmentError, SegmentInfo, resolve_columns
from .planning import load_definitions
from .services import Services

__all__ = ["check_export"]


def check_export(export: dict[str, Any], connection: dict[str, Any] | None, services: Services) -> dict[str, Any]:
    """What a run of `export` (a document) through `connection` (its document, None if
    not found) would stop at: {"export", "ok", "checks": [{"check", "ok", "detail"}]},
    a check per question, in the order a run meets them. Details name files, columns
    and secrets, never a secret's value."""
    checks: list[dict[str, Any]] = []

    def found(check: str, problem: str | None, fine: str) -> bool:
        checks.append({"check": check, "ok": problem is None, "detail": problem or fine})
        return problem is None

    try:  # as the run's plan reads them
        link, definition = load_definitions({"export": export, "connection": connection}, services)
    except DefinitionError as error:
        found("definitions", "; ".join(str(problem) for problem in error.problems), "")
        return _result(export, checks)
    found("definitions", None, f'export "{definition.name}" through connection "{link.name}" ({link.type})')
    found("consent", None if link.consent is not None else
          f'connection "{link.name}" has no recorded privacy consent (consent.accepted_by, consent.accepted_at)',
          f"recorded by {link.consent.accepted_by} on {link.consent.accepted_at}" if link.consent else "")
    wanted = definition.matching.columns()
    readable = []  # (path, files) of the segments a run would read
    for path in definition.segments:
        try:
            files = services.storage.segments.files(path)
            for info in files.files:
                resolve_columns(info.path, info.header, wanted)
        except SegmentError as error:
            found(f"segment {path}", str(error), "")
        else:
            readable.append((path, files))
    # A file of only a header: the run stops when every segment is so, else warns of it.
    all_empty = len(readable) == len(definition.segments) and all(
        i.size <= i.data_start for _, files in readable for i in files.files)
    for path, files in readable:
        columns = "mapped columns found: " + ", ".join(f'"{column}"' for column in wanted.values())
        size, data = sum(info.size for info in files.files), sum(info.size - info.data_start for info in files.files)
        where = (f"table of {files.model}: {len(files.files)} partition file(s) in {_folder(files.files)}; "
                 if files.model else "")
        notes = "".join(f"; {warning}" for warning in files.warnings)
        nothing = "holds no data rows" + ("" if files.model else " (only a header)")
        if data > 0:
            found(f"segment {path}", None, f"{where}{size:,} bytes; {columns}{notes}")
        elif all_empty:
            found(f"segment {path}", f"{where}{nothing}: the run would stop{notes}", "")
        else:
            found(f"segment {path}", None, f"{where}{nothing}: the run will warn of it; {columns}{notes}")
    cls = destination_class(link.type)
    present: list[str] = []
    try:
        credentials = services.secrets.get(link.secret_name)
        present = sorted(field for field, value in credentials.items() if value)  # names, never values
        problem = cls.credentials_problem(credentials)
        problem = f"secret {link.secret_name!r} {problem}" if problem else None
    except SecretError as error:
        problem = str(error)
    found("credentials", problem, f"secret {link.secret_name!r} holds {', '.join(present)}")
    return _result(export, checks)


def _folder(files: list[SegmentInfo]) -> str:
    """The folder(s) of a table's partition files: its snapshot."""
    return ", ".join(sorted({info.path.rsplit("/", 1)[0] for info in files}))


def _result(export: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"export": export.get("name"), "ok": all(check["ok"] for check in checks), "checks": checks}
