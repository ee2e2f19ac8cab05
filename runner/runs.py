"""Running one export locally, end to end, against the configured storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.engine import Services, progress
from shared.engine.starts import check_resumable, instance_id, run_request
from shared.state import RUNS_CONTAINER

from .holds import export_hold, local_user
from .orchestration import LocalRunner
from .workers import Workers

__all__ = ["run_export", "run_status"]


def run_export(export: dict[str, Any], connection: dict[str, Any] | None, *,
               on_activity: Callable[[str, Any, Any], None] | None = None, trigger: str = "cli",
               max_activities: int = 32, resume: str | None = None, workers: Workers | None = None) -> dict[str, Any]:
    """Run `export` (a document) through `connection`; returns the run's report.

    Drives function_app's `export_run` orchestration exactly as the Durable host would.
    `resume` names an interrupted run to continue: confirmed batches are not sent again
    (UnknownRun if the export has no such run). One local run of an export at a time
    (`runner.holds`): RunInProgress while another holds it.
    `workers`: worker processes for its chunk activities (`runner.workers`); none, all in this process.
    """
    import function_app  # the app itself: its orchestrators and activities are what runs

    services = Services.current()
    with export_hold(services.storage.container(RUNS_CONTAINER), export["name"]):  # RunInProgress
        if resume is not None:
            check_resumable(export["name"], resume, services)  # UnknownRun
        request = run_request(export["name"], trigger=trigger, requested_by=local_user(), export=export,
                              connection=connection, run_id=resume)
        with LocalRunner(function_app.app, max_activities=max_activities, on_result=on_activity,
                         workers=workers) as runner:
            runner.run("export_run", request, instance_id(export["name"]))
    return services.runs.report(export["name"], request["run_id"])


def run_status(export: str, run_id: str) -> dict[str, Any] | None:
    """A run's report, or its progress while it runs, as the HTTP API serves them (for `Progress`)."""
    return progress(export, run_id, Services.current())
