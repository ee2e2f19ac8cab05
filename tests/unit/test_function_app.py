"""What the Functions host sees when it indexes function_app.py, and the host.json it runs with.

The bindings are read as the Python worker hands them to the host (`get_raw_bindings`),
through `runner.orchestration.indexed_functions`, because `FunctionApp.get_functions()`
may be called only once per process and the local runner calls it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import function_app
from runner.orchestration import indexed_functions

ROOT = Path(__file__).resolve().parents[2]

HTTP_ROUTES = {
    "start_run": ("POST", "exports/{name}/runs"),
    "get_run": ("GET", "exports/{name}/runs/{run_id}"),
    "check_export": ("POST", "exports/{name}/check"),
    "list_runs": ("GET", "exports/{name}/runs"),
    "list_exports": ("GET", "exports"),
    "list_connections": ("GET", "connections"),
    "put_connection": ("PUT", "connections/{name}"),
    "put_export": ("PUT", "exports/{name}"),
}
ORCHESTRATORS = {"export_run", "export_destination"}
ACTIVITIES = {"plan_run", "plan_next_part", "export_chunk", "finish_run"}


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, Any]]]:
    """Function name -> its bindings as JSON objects, exactly as sent to the host."""
    return {function.get_function_name(): [json.loads(raw) for raw in function.get_raw_bindings()]
            for function in indexed_functions(function_app.app)}


def trigger_of(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    assert len(triggers) == 1, bindings
    return triggers[0]


def test_the_app_registers_exactly_the_timer_the_http_routes_the_orchestrators_and_the_activities(bindings):
    assert set(bindings) == {"scheduled_exports"} | set(HTTP_ROUTES) | ORCHESTRATORS | ACTIVITIES


def test_the_timer_takes_its_schedule_from_the_export_schedule_app_setting(bindings):
    timer = trigger_of(bindings["scheduled_exports"])
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%EXPORT_SCHEDULE%"
    assert timer.get("runOnStartup") is not True  # a cold start or scale-out must never start runs


def test_the_timer_and_the_run_routes_get_a_durable_client_to_start_and_look_up_orchestrations(bindings):
    for name in ("scheduled_exports", "start_run", "get_run"):
        assert {"type": "durableClient", "direction": "IN", "name": "client"} in bindings[name]


@pytest.mark.parametrize(("function", "method", "route"),
                         [(function, method, route) for function, (method, route) in HTTP_ROUTES.items()])
def test_each_http_route_has_its_method_and_needs_a_function_key(bindings, function, method, route):
    trigger = trigger_of(bindings[function])
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == route
    assert trigger["methods"] == [method]
    assert trigger["authLevel"] == "FUNCTION"
    assert {"type": "http", "direction": "OUT", "name": "$return"} in bindings[function]


def test_orchestrators_and_activities_are_registered_under_the_names_the_orchestrations_call(bindings):
    for name in ORCHESTRATORS:
        assert trigger_of(bindings[name])["type"] == "orchestrationTrigger"
    for name in ACTIVITIES:
        assert trigger_of(bindings[name])["type"] == "activityTrigger"


def test_host_json_uses_extension_bundle_4_and_configures_the_durable_task_hub():
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"]
    assert durable["maxConcurrentActivityFunctions"] >= 1
    assert durable["maxConcurrentOrchestratorFunctions"] >= 1
    # Flex Consumption guidance: an idle hub polls at least every 10 s (30 s by default).
    assert durable["storageProvider"]["maxQueuePollingInterval"] == "00:00:10"
    assert host["functionTimeout"]
