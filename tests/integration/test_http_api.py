"""HTTP routes, called as the Functions host calls them: built functions, real requests, real storage.

The Durable client is the one thing replaced (it talks to the Functions host, which does
not run here); definitions and runs are read from and written to Azurite.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.functions.timer import TimerRequest

import function_app
from destinations import SPECS
from shared.engine import Services
from tests.support import connection_of


class DurableClient:
    """Records starts; reports the export's instance as running when told to, with `input`
    as the host gives it back (the run request, as JSON text) when asked for it."""

    def __init__(self, running: bool = False, input: Any = None):
        self.running, self.started, self.input = running, [], input

    async def get_status(self, instance_id: str, show_input: bool = False):
        status = df.OrchestrationRuntimeStatus.Running if self.running else df.OrchestrationRuntimeStatus.Completed
        return DurableOrchestrationStatus(runtimeStatus=status.value, instanceId=instance_id,
                                          input=json.dumps(self.input) if show_input and self.input else None)

    async def start_new(self, name: str, instance_id: str | None = None, client_input: Any = None) -> str:
        json.dumps(client_input)
        self.started.append((name, instance_id, client_input))
        return instance_id

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]:
        return {"id": instance_id, "statusQueryGetUri": f"https://app/runtime/webhooks/durabletask/instances/{instance_id}"}


def call(name: str, method: str, url: str, route_params: dict[str, str], body: Any = None,
         headers: dict[str, str] | None = None, client: DurableClient | None = None) -> func.HttpResponse:
    request = func.HttpRequest(method, url, headers=headers or {}, route_params=route_params,
                               body=json.dumps(body).encode() if body is not None else b"")
    user_function = getattr(function_app, name).build().get_user_function()
    if client is not None:
        # The built function wraps the user code in a middleware that builds the real client
        # from the host's binding data; the user code beneath takes the client itself.
        return asyncio.run(user_function.__wrapped__(request, client))
    return user_function(request)


def principal(*roles: str, name: str = "ana@contoso.com") -> dict[str, str]:
    claims = [{"typ": "roles", "val": role} for role in roles] + [{"typ": "name", "val": name}]
    encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    return {"x-ms-client-principal": encoded}


@pytest.fixture
def defined(app_env, stand_ins, unique):
    """A stored Braze connection (admins only) and export."""
    store = Services.current().storage.definitions(SPECS, allow_local=True)
    connection = {**connection_of(stand_ins, "braze"), "name": f"braze-{unique}", "usable_by": ["admin"]}
    store.put_connection(connection)
    export = {"name": f"vip-{unique}", "display_name": "VIP", "connection": connection["name"],
              "segments": [f"{unique}/vip.csv"], "target": {"segment_id": "vip"},
              "matching": {"email": "Email", "customer_id": "CustomerId"}}
    store.put_export(export)
    return export


def test_starting_a_run_answers_202_with_run_id_and_status_links(defined, stand_ins):
    client = DurableClient()
    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    client=client)
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["instance_id"] == f"export-{defined['name']}" and body["statusQueryGetUri"]
    assert body["report"] == f"/api/exports/{defined['name']}/runs/{body['run_id']}"
    name, instance, run_input = client.started[0]
    assert (name, instance) == ("export_run", f"export-{defined['name']}")
    assert run_input["export"]["name"] == defined["name"] and run_input["trigger"] == "http"
    # The run input names the secret, never holds it (the orchestration's history keeps it).
    assert run_input["connection"]["secret_name"] == "sandbox-braze"
    values = [value for credentials in stand_ins.credentials.values() for value in credentials.values()]
    assert sum(value in json.dumps(run_input) for value in values) == 0  # a count: a failure prints no value


def test_an_unknown_export_is_404_and_a_running_one_is_409(defined):
    response = call("start_run", "POST", "/api/exports/nope/runs", {"name": "nope"}, client=DurableClient())
    assert response.status_code == 404 and "unknown export" in response.get_body().decode()
    busy = DurableClient(running=True)
    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    client=busy)
    assert response.status_code == 409 and busy.started == []


def test_an_export_held_by_a_local_run_is_409_and_left_alone_by_the_schedule(defined, storage):
    """A local run (cli.py run) against the same storage has no orchestration instance: its
    lease on the export is what says it runs."""
    from runner.holds import export_hold
    from shared.engine.starts import instance_id
    from shared.state import RUNS_CONTAINER

    client = DurableClient()
    timer = function_app.scheduled_exports.build().get_user_function().__wrapped__
    with export_hold(storage.container(RUNS_CONTAINER), defined["name"]):
        response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                        client=client)
        assert response.status_code == 409
        asyncio.run(timer(TimerRequest(past_due=False), client))
        assert instance_id(defined["name"]) not in [instance for _, instance, _ in client.started]
    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    client=client)
    assert response.status_code == 202  # the hold ended with the local run
    assert [instance for _, instance, _ in client.started].count(instance_id(defined["name"])) == 1


def test_a_run_started_meanwhile_by_another_caller_is_409_not_500(defined):
    """Between the status read and the start, another caller started the instance: the host
    refuses to start a running instance id again."""
    class Raced(DurableClient):
        async def start_new(self, name, instance_id=None, client_input=None):
            self.running = True  # the other caller's start
            raise Exception("An Orchestration instance with the status Running already exists.")

    class Down(DurableClient):
        async def start_new(self, name, instance_id=None, client_input=None):
            raise ConnectionError("the Durable extension did not answer")

    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    client=Raced())
    assert response.status_code == 409
    # Any other failure is not passed off as "a run is in progress".
    with pytest.raises(ConnectionError):
        call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]}, client=Down())


def test_a_contributor_may_not_use_an_admins_only_connection(defined):
    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    headers=principal("contributor"), client=DurableClient())
    assert response.status_code == 403
    response = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                    headers=principal("admin"), client=DurableClient())
    assert response.status_code == 202


def test_putting_an_invalid_export_lists_every_problem(defined):
    bad = {**defined, "matching": {}, "target": {}}
    response = call("put_export", "PUT", f"/api/exports/{defined['name']}", {"name": defined["name"]}, body=bad,
                    headers=principal("admin"))
    assert response.status_code == 400
    problems = json.loads(response.get_body())["problems"]
    assert any("matching.email: is required" in p for p in problems)
    assert any("matching.customer_id: is required for Braze" in p for p in problems)
    assert any("target.segment_id: is required" in p for p in problems)


def test_managing_connections_needs_the_admin_role(app_env, stand_ins, unique):
    document = {**connection_of(stand_ins, "snapchat"), "name": f"snap-{unique}"}
    url, params = f"/api/connections/snap-{unique}", {"name": f"snap-{unique}"}
    def put(**headers):
        return call("put_connection", "PUT", url, params, body=document, headers=headers).status_code

    assert put() == 403
    assert put(**principal("contributor")) == 403
    assert put(**principal("admin")) == 200
    listed = json.loads(call("list_connections", "GET", "/api/connections", {}).get_body())["connections"]
    assert {"name": f"snap-{unique}", "type": "snapchat", "display_name": "Snapchat (sandbox)",
            "usable_by": ["admin", "contributor"]} in listed


def test_a_consent_record_says_who_stored_it_as_signed_in_and_cannot_be_dated_in_the_future(app_env, stand_ins,
                                                                                          unique):
    url, params = f"/api/connections/snap-{unique}", {"name": f"snap-{unique}"}
    consent = {"accepted_by": "dpo@contoso.com", "accepted_at": "2026-11-01T09:00:00Z",
               "recorded_by": "someone else", "recorded_at": "2020-01-01T00:00:00Z"}
    document = {**connection_of(stand_ins, "snapchat"), "name": f"snap-{unique}", "consent": consent}
    stored = call("put_connection", "PUT", url, params, body=document,
                  headers=principal("admin", name="ana@contoso.com"))
    recorded = json.loads(stored.get_body())["consent"]
    assert stored.status_code == 200 and recorded["accepted_by"] == "dpo@contoso.com"
    assert recorded["recorded_by"] == "ana@contoso.com" and recorded["recorded_at"] > "2026-01-01"
    # Another admin changing a setting later does not become the one who recorded the consent.
    edited = {**document, "display_name": "Snapchat EU", "consent": {k: consent[k] for k in ("accepted_by",
                                                                                         "accepted_at")}}
    again = call("put_connection", "PUT", url, params, body=edited, headers=principal("admin", name="bo@contoso.com"))
    assert json.loads(again.get_body())["consent"] == recorded
    future = {**document, "consent": {"accepted_by": "dpo@contoso.com", "accepted_at": "2999-01-01T00:00:00Z"}}
    refused = call("put_connection", "PUT", url, params, body=future, headers=principal("admin"))
    assert refused.status_code == 400 and "consent.accepted_at: is in the future" in refused.get_body().decode()


def test_a_run_status_is_404_for_a_run_that_was_never_started(app_env):
    response = call("get_run", "GET", "/api/exports/x/runs/nope", {"name": "x", "run_id": "nope"},
                    client=DurableClient())
    assert response.status_code == 404


def test_a_run_polled_before_its_plan_is_written_is_starting_not_unknown(defined):
    """The status URL is handed out at once; the plan's first part takes a second or more."""
    client = DurableClient()
    started = call("start_run", "POST", f"/api/exports/{defined['name']}/runs", {"name": defined["name"]},
                   client=client)
    run_id, request = json.loads(started.get_body())["run_id"], client.started[0][2]
    polled = DurableClient(running=True, input=request)
    response = call("get_run", "GET", f"/api/exports/{defined['name']}/runs/{run_id}",
                    {"name": defined["name"], "run_id": run_id}, client=polled)
    assert response.status_code == 200
    # The fields of a running run's progress (one shape for clients that poll), nothing done.
    assert json.loads(response.get_body()) == {
        "run_id": run_id, "export": defined["name"], "status": "starting", "requested_at": request["requested_at"],
        "planned_at": None, "updated_at": None, "chunks": 0, "chunks_done": 0, "chunks_sending": 0,
        "plan_complete": False, "input_rows": 0, "rows_done": 0, "delivered": 0, "rejected": 0, "skipped": 0}
    # Another run of the export, or one that ended without a plan, stays unknown.
    other = call("get_run", "GET", f"/api/exports/{defined['name']}/runs/other",
                 {"name": defined["name"], "run_id": "other"}, client=polled)
    ended = call("get_run", "GET", f"/api/exports/{defined['name']}/runs/{run_id}",
                 {"name": defined["name"], "run_id": run_id}, client=DurableClient(running=False, input=request))
    assert other.status_code == ended.status_code == 404


def test_the_schedule_starts_one_run_per_enabled_export(defined, unique):
    store = Services.current().storage.definitions(SPECS, allow_local=True)
    store.put_export({**defined, "name": f"off-{unique}", "enabled": False})
    client = DurableClient()
    timer = function_app.scheduled_exports.build().get_user_function().__wrapped__
    asyncio.run(timer(TimerRequest(past_due=False), client))
    started = {instance for _, instance, _ in client.started}
    assert f"export-{defined['name']}" in started and f"export-off-{unique}" not in started
    assert all(run_input["trigger"] == "timer" for _, _, run_input in client.started)


def test_the_export_list_says_enabled_as_the_schedule_reads_it(defined, unique):
    """An export without `enabled` is run by the schedule: the list said `null` for it."""
    store = Services.current().storage.definitions(SPECS, allow_local=True)
    store.put_export({**defined, "name": f"off-{unique}", "enabled": False})
    listed = {e["name"]: e for e in json.loads(call("list_exports", "GET", "/api/exports", {}).get_body())["exports"]}
    assert "enabled" not in defined and listed[defined["name"]]["enabled"] is True
    assert listed[f"off-{unique}"]["enabled"] is False


def test_the_schedule_leaves_an_export_that_is_still_running(defined):
    client = DurableClient(running=True)
    timer = function_app.scheduled_exports.build().get_user_function().__wrapped__
    asyncio.run(timer(TimerRequest(past_due=False), client))
    assert client.started == []
