"""The orchestrators, driven as the Durable replay would with orchestrator_generator_wrapper.

The context is a recording stand-in: each call returns a task whose result the test
chooses, so the tests see exactly which activities an orchestrator schedules, with what
(small) input, in what order.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from azure.durable_functions.testing import orchestrator_generator_wrapper

import function_app


class Task:
    """A scheduled call. A failed one raises when yielded directly (as Durable's replay throws
    it into the orchestrator); as a when-any winner its `result` is the exception itself."""

    def __init__(self, value: Any):
        self.value, self.raises = value, True

    @property
    def result(self) -> Any:
        if isinstance(self.value, Exception) and self.raises:
            raise self.value
        return self.value


class Context:
    """Records scheduled calls; results come from `results(kind, name, input)`."""

    def __init__(self, input_: Any, results, pick=lambda tasks: tasks[0]):
        self._input, self._results, self._pick = input_, results, pick
        self.calls: list[tuple[str, str, Any]] = []
        self.instance_id = "export-vip"

    def get_input(self) -> Any:
        return self._input

    def _task(self, kind: str, name: str, input_: Any) -> Task:
        json.dumps(input_)  # everything an orchestrator passes must be JSON
        self.calls.append((kind, name, input_))
        return Task(self._results(kind, name, input_))

    def call_activity(self, name, input_=None):
        return self._task("activity", name, input_)

    def call_activity_with_retry(self, name, retry_options, input_=None):
        raise AssertionError("retried by the orchestrators themselves (azure-functions-durable-python#603)")

    def call_sub_orchestrator(self, name, input_=None, instance_id=None):
        return self._task("sub", name, input_)

    def task_any(self, tasks):
        for task in tasks:
            task.raises = False
        return SimpleNamespace(result=self._pick(tasks))


def orchestrator(name: str):
    return getattr(function_app, name).build().get_user_function().orchestrator_function


def drive(name: str, context: Context) -> Any:
    return list(orchestrator_generator_wrapper(orchestrator(name)(context)))[-1]


PLAN = {"run_id": "r1", "export": "vip", "status": "planned", "error": None, "chunks": 5, "width": 2, "rows": 10}


def test_export_run_plans_then_exports_through_the_destination_then_reports():
    chunk_results = [{"chunk": i, "rows": 2} for i in range(5)]

    def results(kind, name, input_):
        return {"plan_run": PLAN, "export_destination": chunk_results, "finish_run": {"status": "succeeded"}}[name]

    context = Context({"run_id": "r1", "export": {"name": "vip"}}, results)
    assert drive("export_run", context) == {"status": "succeeded"}
    assert [(kind, name) for kind, name, _ in context.calls] == [
        ("activity", "plan_run"), ("sub", "export_destination"), ("activity", "finish_run")]
    assert context.calls[2][2] == {"export": "vip", "run_id": "r1", "results": chunk_results, "error": None,
                                   "settled": True}


def test_a_plan_or_report_activity_that_fails_outright_is_scheduled_again_up_to_three_times():
    failures = {"plan_run": 1, "finish_run": 2}

    def results(kind, name, input_):
        if failures.get(name):
            failures[name] -= 1
            return ConnectionError("storage hiccup")
        return {"plan_run": {**PLAN, "status": "failed", "error": "x"}, "finish_run": {"status": "failed"}}[name]

    context = Context({"run_id": "r1"}, results)
    assert drive("export_run", context) == {"status": "failed"}
    assert [name for _, name, _ in context.calls] == ["plan_run", "plan_run", "finish_run", "finish_run", "finish_run"]


def test_a_failed_plan_goes_straight_to_the_report_with_its_error():
    failed = {**PLAN, "status": "failed", "error": 'mapped column(s) "Email" not found', "chunks": 0}

    def results(kind, name, input_):
        return failed if name == "plan_run" else {"status": "failed"}

    context = Context({"run_id": "r1"}, results)
    drive("export_run", context)
    assert [name for _, name, _ in context.calls] == ["plan_run", "finish_run"]
    assert context.calls[-1][2]["error"] == 'mapped column(s) "Email" not found'


def test_chunks_fan_out_with_small_inputs_and_every_result_is_collected():
    context = Context(PLAN, lambda kind, name, input_: {"chunk": input_["chunk"], "failure": None})
    results = drive("export_destination", context)
    assert sorted(r["chunk"] for r in results) == [0, 1, 2, 3, 4]
    inputs = [input_ for _, _, input_ in context.calls]
    assert inputs[0] == {"export": "vip", "run_id": "r1", "chunk": 0, "abandon": None}
    assert all(len(json.dumps(i)) < 200 for i in inputs)  # names and numbers, never rows or secrets


def test_after_a_destination_failure_the_remaining_chunks_are_only_accounted():
    def results(kind, name, input_):
        failure = "Braze refused the credentials (401): Invalid API key" if input_["chunk"] == 0 else None
        return {"chunk": input_["chunk"], "failure": failure or input_["abandon"]}

    context = Context({**PLAN, "width": 1}, results)
    drive("export_destination", context)
    abandon = [input_["abandon"] for _, _, input_ in context.calls]
    assert abandon[0] is None
    assert abandon[1:] == ["Braze refused the credentials (401): Invalid API key"] * 4


def test_a_chunk_activity_that_failed_for_good_stops_sending_and_is_left_to_the_report():
    def results(kind, name, input_):
        if input_["chunk"] == 0:  # as the host reports it: the reason, then the stack
            return RuntimeError("host recycled \n Traceback (most recent call last): ...")
        return {"chunk": input_["chunk"], "failure": None}

    context = Context({**PLAN, "width": 1}, results)
    collected = drive("export_destination", context)
    # The chunk is left to the report with its reason (its first line), the others accounted unsent.
    assert collected[0] == {"chunk": 0, "activity_failed": "a chunk activity failed: host recycled"}
    assert [r["chunk"] for r in collected[1:]] == [1, 2, 3, 4]
    assert [input_["chunk"] for _, _, input_ in context.calls[:3]] == [0, 0, 0]  # three attempts in all
    assert context.calls[3][2]["abandon"] == "a chunk activity failed: host recycled"


def test_a_chunk_activity_that_fails_once_is_scheduled_again_and_its_result_kept():
    failed = set()

    def results(kind, name, input_):
        if input_["chunk"] == 2 and 2 not in failed:
            failed.add(2)
            return RuntimeError("host recycled")
        return {"chunk": input_["chunk"], "failure": None}

    context = Context(PLAN, results)
    collected = drive("export_destination", context)
    assert sorted(r["chunk"] for r in collected) == [0, 1, 2, 3, 4]
    assert [input_["chunk"] for _, _, input_ in context.calls].count(2) == 2
    assert all(input_["abandon"] is None for _, _, input_ in context.calls)
    # The attempt again knows the first ran (it may have sent batches it did not record).
    assert [input_.get("attempted", False) for _, _, input_ in context.calls if input_["chunk"] == 2] == [False, True]


def test_a_destination_orchestration_that_dies_still_ends_with_a_report():
    class Boom(Exception):
        pass

    def results(kind, name, input_):
        return {"plan_run": PLAN, "finish_run": {"status": "failed"}}.get(name) or Boom("sub-orchestration failed")

    context = Context({"run_id": "r1"}, results)
    assert drive("export_run", context) == {"status": "failed"}
    assert "the destination's orchestration failed: sub-orchestration failed" in context.calls[-1][2]["error"]
    # Its chunk activities may still be running: the report accounts them from checkpoints only.
    assert context.calls[-1][2]["settled"] is False


def test_chunks_are_sent_while_the_rest_of_the_plan_is_read():
    parts = iter([{**PLAN, "chunks": 3, "complete": False}, {**PLAN, "chunks": 5, "complete": True}])

    def results(kind, name, input_):
        return next(parts) if name == "plan_next_part" else {"chunk": input_["chunk"], "failure": None}

    context = Context({**PLAN, "chunks": 1, "complete": False}, results)
    collected = drive("export_destination", context)
    assert sorted(r["chunk"] for r in collected) == [0, 1, 2, 3, 4]
    names = [name if name == "plan_next_part" else input_["chunk"] for _, name, input_ in context.calls]
    # chunk 0 goes out with the first part; each later part's chunks as soon as it is planned
    assert names == ["plan_next_part", 0, "plan_next_part", 1, 2, 3, 4]
    assert context.calls[0][2] == {"export": "vip", "run_id": "r1"}


def test_a_plan_part_that_failed_for_good_ends_planning_and_the_planned_chunks_still_go_out():
    def results(kind, name, input_):
        if name == "plan_next_part":
            return RuntimeError("storage unreachable")
        return {"chunk": input_["chunk"], "failure": None}

    context = Context({**PLAN, "chunks": 2, "complete": False}, results)
    collected = drive("export_destination", context)
    assert [r["chunk"] for r in collected] == [0, 1]
    assert [name for _, name, _ in context.calls].count("plan_next_part") == 3  # three attempts in all
    assert all(input_.get("abandon") is None for _, name, input_ in context.calls if name == "export_chunk")


def test_a_plan_part_that_ends_while_chunks_send_launches_its_chunks_within_the_width():
    """The usual order in a real run: the next part is read while the first chunks send."""
    parts = iter([{**PLAN, "chunks": 4, "complete": False}, {**PLAN, "chunks": 6, "complete": True}])
    running = []

    def results(kind, name, input_):
        if name == "plan_next_part":
            return next(parts)
        running.append(input_["chunk"])
        return {"chunk": input_["chunk"], "failure": None}

    # The planning task (listed last) wins whenever it is there: parts end before any chunk.
    context = Context({**PLAN, "chunks": 2, "complete": False, "width": 2}, results, pick=lambda tasks: tasks[-1])
    collected = drive("export_destination", context)
    assert sorted(r["chunk"] for r in collected) == [0, 1, 2, 3, 4, 5]
    names = [name if name == "plan_next_part" else input_["chunk"] for _, name, input_ in context.calls]
    # both parts are read before a chunk ends, and no more than `width` chunks are ever out
    assert names == ["plan_next_part", 0, 1, "plan_next_part", 2, 3, 4, 5]


def test_a_chunk_retried_after_the_destination_failed_only_accounts_its_rows():
    attempts = []

    def results(kind, name, input_):
        attempts.append((input_["chunk"], input_["abandon"]))
        if input_["chunk"] == 0:
            return {"chunk": 0, "failure": "Braze refused the credentials (401)"}
        if input_["chunk"] == 1 and len([a for a in attempts if a[0] == 1]) == 1:
            return RuntimeError("host recycled")
        return {"chunk": input_["chunk"], "failure": input_["abandon"]}

    drive("export_destination", Context({**PLAN, "width": 2}, results))
    assert [abandon for chunk, abandon in attempts if chunk == 1] == [None, "Braze refused the credentials (401)"]
