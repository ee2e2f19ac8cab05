"""Segment export Function App: triggers, orchestrators and activities (Python v2 model).

Thin adapters only; the work is in `shared.engine`. The shape of a run::

    timer (EXPORT_SCHEDULE) / POST /api/exports/{name}/runs
        -> export_run (orchestrator, one instance per export)
             -> plan_run (activity: the plan's first part, one chunk)
             -> export_destination (sub-orchestrator: chunk fan-out, width from the plan)
                  -> plan_next_part (activity) while the plan is incomplete, one at a time
                  -> export_chunk (activity) x chunks, at most `width` at once, each as
                     soon as it is planned
             -> finish_run (activity: report.json, rejected.csv)

Orchestrators are deterministic and carry small JSON only: names, counts, run ids;
never rows, never secrets. The local runner (`runner/`) drives these same functions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import engine
from shared.access import Caller, may_manage_connection, may_manage_export, may_use_connection
from shared.config import DefinitionError, export_enabled
from shared.engine import Services, progress, starting
from shared.engine.starts import UnknownExport, instance_id, run_request
from shared.worker import set_up_worker

set_up_worker()  # memory and response headers for a process reading plans and sending chunks (shared/worker.py)
app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("segment_export")

# An activity that fails outright (host recycled, storage hiccup) is scheduled again, up to
# ATTEMPTS times in all; a chunk's checkpoint makes that cheap and keeps confirmed batches
# from being resent, a plan part starts again from the last plan stored. Retried by the
# orchestrators themselves, not with `call_activity_with_retry`: after one of the SDK's
# retrying tasks has retried, tasks scheduled later can leave the orchestration waiting
# for ever (azure-functions-durable-python#603, closed as won't fix for 1.x).
ATTEMPTS = 3
ACTIVE = {df.OrchestrationRuntimeStatus.Running, df.OrchestrationRuntimeStatus.Pending,
          df.OrchestrationRuntimeStatus.ContinuedAsNew, df.OrchestrationRuntimeStatus.Suspended}


def _json(status: int, body: Any) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


async def _start(client: df.DurableOrchestrationClient, request: dict[str, Any]) -> str | None:
    """Start a run of the request's export unless one is in progress, here or as a local run
    against the same storage (`cli.py run`); returns the instance id or None."""
    instance = instance_id(request["export"]["name"])
    status = await client.get_status(instance)
    if status is not None and status.runtime_status in ACTIVE:
        return None
    if Services.current().runs.held_by_local_run(request["export"]["name"]):
        return None
    try:
        return await client.start_new("export_run", instance, request)
    except Exception:
        # Started meanwhile by another caller (the host refuses a running instance id)? Any
        # other failure is raised as it is.
        status = await client.get_status(instance)
        if status is not None and status.runtime_status in ACTIVE:
            log.warning("export %s: not started, its instance %s was started meanwhile",
                        request["export"]["name"], instance)
            return None
        raise


# -- triggers ---------------------------------------------------------------------------

@app.timer_trigger(schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def scheduled_exports(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start one run per enabled export; an export still running from last time is left alone."""
    services = Services.current()
    for document in services.definitions.documents("exports"):
        if export_enabled(document) and isinstance(document.get("name"), str):
            try:  # one export that cannot start (its connection deleted meanwhile) holds back none of the others
                request = run_request(document["name"], trigger="timer", requested_by="schedule", services=services)
                started = await _start(client, request)
            except Exception:  # noqa: BLE001 - logged with its cause; the next export is started all the same
                log.exception("scheduled export %s could not be started", document["name"])
                continue
            log.info("scheduled export %s: %s", document["name"], f"run {request['run_id']}" if started else
                     "skipped, previous run still in progress")


@app.route(route="exports/{name}/runs", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Run an export now: 202 with the run id and status URLs; 404 unknown; 409 already running."""
    name, caller = req.route_params["name"], Caller.from_headers(req.headers)
    try:
        request = run_request(name, trigger="http", requested_by=caller.label, services=Services.current())
    except UnknownExport as error:
        return _json(404, {"error": error.args[0]})
    refusal = may_use_connection(caller, request["connection"])
    if refusal:
        return _json(403, {"error": refusal})
    instance = await _start(client, request)
    if instance is None:
        return _json(409, {"error": f'a run of export "{name}" is in progress; wait for it to finish'})
    links = client.create_http_management_payload(instance)
    return _json(202, {"run_id": request["run_id"], "export": name, "instance_id": instance,
                       "report": f"/api/exports/{name}/runs/{request['run_id']}", **links})


@app.route(route="exports/{name}/check", methods=["POST"])
def check_export(req: func.HttpRequest) -> func.HttpResponse:
    """What a run of the export would stop at (definitions, consent, segments, credentials),
    found without sending anything: 200 with each check; 404 unknown export."""
    services = Services.current()
    export = services.definitions.export_document(req.route_params["name"])
    if export is None:
        return _json(404, {"error": f'unknown export "{req.route_params["name"]}"'})
    connection = services.definitions.connection_document(str(export.get("connection")))
    refusal = may_use_connection(Caller.from_headers(req.headers), connection)
    if refusal:
        return _json(403, {"error": refusal})
    return _json(200, engine.check_export(export, connection, services))


@app.route(route="exports/{name}/runs/{run_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The run's report when finished, its progress while running, "starting" before its plan is written."""
    name, run_id = req.route_params["name"], req.route_params["run_id"]
    found = progress(name, run_id, Services.current()) or await _starting(client, name, run_id)
    return _json(200, found) if found else _json(404, {"error": "unknown run"})


async def _starting(client: df.DurableOrchestrationClient, export: str, run_id: str) -> dict[str, Any] | None:
    """A run whose orchestration is started but whose plan's first part is not written yet
    (a second or so, longer while the host is busy): polled at once, it is not unknown."""
    status = await client.get_status(instance_id(export), show_input=True)
    if status is None or status.runtime_status not in ACTIVE:
        return None
    request = status.input_
    if isinstance(request, str):  # the host may hand the input back as the JSON text it stored
        try:
            request = json.loads(request)
        except ValueError:
            return None
    if not isinstance(request, dict) or request.get("run_id") != run_id:
        return None
    return starting(export, run_id, request.get("requested_at"))


@app.route(route="exports/{name}/runs", methods=["GET"])
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Run ids of an export, newest first."""
    return _json(200, {"runs": Services.current().runs.run_ids(req.route_params["name"])[:100]})


@app.route(route="exports", methods=["GET"])
def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    documents = Services.current().definitions.documents("exports")
    return _json(200, {"exports": [{"name": d.get("name"), "display_name": d.get("display_name"),
                                    "connection": d.get("connection"), "enabled": export_enabled(d)}
                                   for d in documents]})


@app.route(route="connections", methods=["GET"])
def list_connections(req: func.HttpRequest) -> func.HttpResponse:
    documents = Services.current().definitions.documents("connections")
    return _json(200, {"connections": [{key: d.get(key) for key in ("name", "type", "display_name", "usable_by")}
                                       for d in documents]})


@app.route(route="connections/{name}", methods=["PUT"])
def put_connection(req: func.HttpRequest) -> func.HttpResponse:
    """Define or replace a connection (admins); the document is validated before it is stored."""
    caller = Caller.from_headers(req.headers)
    refusal = may_manage_connection(caller)
    if refusal:
        return _json(403, {"error": refusal})

    return _put(req, lambda definitions, document: definitions.put_connection(document, recorded_by=caller.label))


@app.route(route="exports/{name}", methods=["PUT"])
def put_export(req: func.HttpRequest) -> func.HttpResponse:
    """Define or replace an export (admins, or contributors where its connection allows them)."""
    store = Services.current().definitions
    document = _body(req)
    connection = store.connection_document(str(document.get("connection"))) if isinstance(document, dict) else None
    refusal = may_manage_export(Caller.from_headers(req.headers), connection)
    if refusal:
        return _json(403, {"error": refusal})
    return _put(req, lambda store, document: store.put_export(document))


def _body(req: func.HttpRequest) -> Any:
    try:
        return req.get_json()
    except ValueError:
        return None


def _put(req: func.HttpRequest, store_document) -> func.HttpResponse:
    document = _body(req)
    if not isinstance(document, dict):
        return _json(400, {"error": "the body must be a JSON object"})
    if document.setdefault("name", req.route_params["name"]) != req.route_params["name"]:
        return _json(400, {"error": "the name in the body differs from the name in the URL"})
    try:
        store_document(Services.current().definitions, document)
    except DefinitionError as error:
        return _json(400, {"error": "invalid definition", "problems": [str(p) for p in error.problems]})
    return _json(200, document)


# -- orchestrators ----------------------------------------------------------------------

@app.orchestration_trigger(context_name="context")
def export_run(context: df.DurableOrchestrationContext):
    """One run of one export: plan, export through the destination, report."""
    request = context.get_input()
    plan = yield from _attempts(context, "plan_run", request)
    # settled: no chunk activity of the run can still be running (the destination's
    # orchestration returned, or never started), so the report may account the chunks
    # without a result itself; after its orchestration died, only from their checkpoints.
    results, error, settled = [], plan["error"], True
    if plan["status"] == "planned":
        try:
            results = yield context.call_sub_orchestrator("export_destination", plan, f"{plan['run_id']}-destination")
        except Exception as failure:  # the destination's orchestration died: report from checkpoints
            error, settled = f"the destination's orchestration failed: {_first_line(failure)}", False
    summary = yield from _attempts(context, "finish_run", {"export": plan["export"], "run_id": plan["run_id"],
                                                           "results": results, "error": error, "settled": settled})
    return summary


def _attempts(context: df.DurableOrchestrationContext, name: str, input_: Any):
    """Activity `name` awaited alone, scheduled again when it fails, up to ATTEMPTS times."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return (yield context.call_activity(name, input_))
        except Exception:
            if attempt == ATTEMPTS:
                raise


@app.orchestration_trigger(context_name="context")
def export_destination(context: df.DurableOrchestrationContext):
    """Fan the chunks out to `width` activities at a time, each chunk as soon as it is planned,
    while the plan's next part is read; after a failure, account the rest unsent."""
    plan = context.get_input()
    part_task = {"export": plan["export"], "run_id": plan["run_id"]}
    running: list[tuple[Any, dict[str, Any], int]] = []  # (task, its input, attempt)
    results, abandon = [], None
    planned, launched, planning = plan["chunks"], 0, None  # planning: (task, attempt)
    complete = plan.get("complete", True)
    while True:
        if planning is None and not complete:  # read on even after a failure: its rows are accounted
            planning = (context.call_activity("plan_next_part", part_task), 1)
        while launched < planned and len(running) < plan["width"]:
            task = {"export": plan["export"], "run_id": plan["run_id"], "chunk": launched, "abandon": abandon}
            running.append((context.call_activity("export_chunk", task), task, 1))
            launched += 1
        if not running and planning is None:
            break
        done = yield context.task_any([entry[0] for entry in running] + ([planning[0]] if planning else []))
        if planning is not None and done is planning[0]:
            part, attempt, planning = done.result, planning[1], None
            if not isinstance(part, Exception):
                planned, complete = part["chunks"], part["complete"]
            elif attempt < ATTEMPTS:
                planning = (context.call_activity("plan_next_part", part_task), attempt + 1)
            else:  # failed for good: the chunks planned are still sent; the report says where it stopped
                complete = True
        else:
            _, task, attempt = running.pop(next(at for at, entry in enumerate(running) if entry[0] is done))
            if isinstance(done.result, Exception) and attempt < ATTEMPTS:
                # Again, with what is known now: after a destination failure it only accounts,
                # and what it may have sent before failing is "not confirmed", not "not sent".
                task = {**task, "abandon": abandon, "attempted": True}
                running.append((context.call_activity("export_chunk", task), task, attempt + 1))
                continue
            if isinstance(done.result, Exception):  # failed for good: the report accounts it, for this reason
                results.append({"chunk": task["chunk"], "activity_failed": _failure_of(done.result)})
            else:
                results.append(done.result)
            abandon = abandon or _failure_of(done.result)
    return [result for result in results if isinstance(result, dict)]


def _failure_of(result: Any) -> str | None:
    """Why the destination failed, from a chunk's result (or the exception of a failed activity)."""
    if isinstance(result, Exception):
        return f"a chunk activity failed: {_first_line(result)}"
    return result.get("failure") if isinstance(result, dict) else None


def _first_line(error: Exception) -> str:
    """An activity's failure as the host reports it is its reason, then its whole stack: the
    reason is what a report (and every row it makes "not sent") should carry."""
    text = str(error).strip()
    return text.splitlines()[0].strip()[:300] if text else type(error).__name__


# -- activities -------------------------------------------------------------------------

@app.activity_trigger(input_name="request")
def plan_run(request: dict) -> dict:
    return engine.plan_run(request, Services.current())


@app.activity_trigger(input_name="task")
def plan_next_part(task: dict) -> dict:
    return engine.plan_next_part(task, Services.current())


@app.activity_trigger(input_name="task")
def export_chunk(task: dict) -> dict:
    return engine.export_chunk(task, Services.current())


@app.activity_trigger(input_name="task")
def finish_run(task: dict) -> dict:
    return engine.finish_run(task, Services.current())

