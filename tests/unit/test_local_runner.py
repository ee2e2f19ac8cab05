"""The local runner plays the Durable host: JSON between functions, failures thrown, fan-out."""

from __future__ import annotations

import threading

import azure.durable_functions as df
import azure.functions as func
import pytest

from runner.orchestration import LocalRunner

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
seen_inputs: list = []
lock = threading.Lock()


@app.orchestration_trigger(context_name="context")
def parent(context):
    child = yield context.call_sub_orchestrator("child", {"n": context.get_input()["n"]}, "parent:child")
    echoed = yield context.call_activity("echo", {"values": (1, 2), "nested": {"ok": True}})
    try:
        yield context.call_activity("explode", "boom")
    except Exception as error:
        caught = str(error)
    return {"child": child, "echoed": echoed, "caught": caught}


@app.orchestration_trigger(context_name="context")
def child(context):
    tasks = [context.call_activity("square", i) for i in range(context.get_input()["n"])]
    results = []
    while tasks:
        done = yield context.task_any(tasks)
        tasks.remove(done)
        results.append(done.result)
    return sorted(results)


@app.activity_trigger(input_name="value")
def echo(value: dict) -> dict:
    with lock:
        seen_inputs.append(value)
    return value


@app.activity_trigger(input_name="value")
def square(value: int) -> int:
    return value * value


@app.activity_trigger(input_name="value")
def explode(value: str) -> None:
    raise RuntimeError(f"activity failed: {value}")


def test_the_runner_drives_orchestrators_activities_and_sub_orchestrations_as_the_host_does():
    with LocalRunner(app) as runner:
        result = runner.run("parent", {"n": 5}, "parent")
    assert result["child"] == [0, 1, 4, 9, 16]
    assert result["echoed"] == {"values": [1, 2], "nested": {"ok": True}}  # JSON: the tuple arrives as a list
    assert seen_inputs[-1] == {"values": [1, 2], "nested": {"ok": True}}
    assert result["caught"] == "activity failed: boom"  # a failed activity is thrown into the orchestrator


def test_an_input_that_is_not_json_fails_as_it_would_in_the_host():
    """The host carries JSON only: a set where JSON is expected fails at the boundary, even
    in a field the orchestrator never reads (the local runner must not be more lenient)."""
    with LocalRunner(app) as runner, pytest.raises(TypeError, match="not JSON serializable"):
        runner.run("parent", {"n": 1, "unread": {1, 2}}, "parent")


def test_an_unknown_orchestrator_is_a_clear_error():
    from runner.orchestration import OrchestrationFailed

    with LocalRunner(app) as runner, pytest.raises(OrchestrationFailed, match="no orchestrator named 'nope'"):
        runner.run("nope", {}, "x")
