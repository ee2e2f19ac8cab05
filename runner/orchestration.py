"""The local runner: drives function_app's orchestrators and activities in-process.

It plays the part of the Durable Functions host for one run: it calls the registered
orchestrator generators with a context offering the calls they use (`call_activity`,
`call_sub_orchestrator`, `task_any`), runs the
registered activity functions on a thread pool (chunk activities, given `Workers`, in
worker processes: `runner.workers`), and passes every input and result through a JSON
round trip, as the host does. There is one orchestration logic: this
module adds none, it only executes what `function_app.py` declares.

Differences from the host, on purpose: no replay (each generator runs once, in order),
and the orchestrations (and, without workers, every activity) live in the runner's
process. Activities are retried by the orchestrators themselves (function_app.py), so
the runner offers no retrying call: a second retry mechanism would differ from the host's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from shared.worker import set_up_worker

from .workers import Workers

__all__ = ["LocalRunner", "OrchestrationFailed", "indexed_functions"]


class OrchestrationFailed(Exception):
    """An orchestrator raised; the run could not finish."""


def _round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


class _Task:
    """A pending call: an activity or sub-orchestration (a future), or a when-any of them."""

    def __init__(self, future: Future | None = None, children: list[_Task] | None = None):
        self.future = future
        self.children = children or []

    def wait(self) -> Any:
        """Block until done; return what `yield task` gives the orchestrator, or raise its error."""
        if self.future is not None:
            return self.future.result()
        first = _first_done([child.future for child in self.children])
        return next(child for child in self.children if child.future is first)

    @property
    def result(self) -> Any:
        """Like Durable's TaskBase.result: the value, or the exception of a failed call."""
        error = self.future.exception()
        return error if error is not None else self.future.result()


def _first_done(futures: list[Future]) -> Future:
    done = threading.Event()
    for future in futures:
        future.add_done_callback(lambda _: done.set())
    done.wait()
    return next(future for future in futures if future.done())


class _Context:
    """The part of DurableOrchestrationContext the orchestrators in function_app.py use."""

    def __init__(self, runner: LocalRunner, instance_id: str, input_: Any):
        self._runner = runner
        self.instance_id = instance_id
        self._input = input_
        self.is_replaying = False
        self.custom_status: Any = None

    def get_input(self) -> Any:
        return self._input

    @property
    def current_utc_datetime(self) -> datetime:
        return datetime.now(UTC)

    def set_custom_status(self, status: Any) -> None:
        self.custom_status = status

    def call_activity(self, name: str, input_: Any = None) -> _Task:
        return _Task(self._runner._submit_activity(name, input_))

    def call_sub_orchestrator(self, name: str, input_: Any = None, instance_id: str | None = None) -> _Task:
        return _Task(self._runner._submit_orchestration(name, input_, instance_id or f"{self.instance_id}:{name}"))

    def task_any(self, tasks: list[_Task]) -> _Task:
        return _Task(children=list(tasks))


_indexed: dict[int, list[Any]] = {}
_indexed_lock = threading.Lock()


def indexed_functions(app: Any) -> list[Any]:
    """The app's functions as the host indexes them. `FunctionApp.get_functions()` may be
    called only once per app (a second call fails its uniqueness check), so it is kept."""
    with _indexed_lock:
        if id(app) not in _indexed:
            _indexed[id(app)] = app.get_functions()
        return _indexed[id(app)]


def registered(app: Any) -> tuple[dict[str, Callable[[Any], Generator]], dict[str, Callable[[Any], Any]]]:
    """The app's orchestrator generators and activity functions, by name."""
    orchestrators, activities = {}, {}
    for function in indexed_functions(app):
        trigger = function.get_trigger()
        kind = trigger.type if trigger else None
        if kind == "orchestrationTrigger":
            orchestrators[function.get_function_name()] = function.get_user_function().orchestrator_function
        elif kind == "activityTrigger":
            activities[function.get_function_name()] = function.get_user_function()
    return orchestrators, activities


class LocalRunner:
    """Runs orchestrations of a Durable Functions app in this process.

    `on_result(function name, input, result)` is called after every activity, for
    progress display. `max_activities` plays host.json's maxConcurrentActivityFunctions
    times the instances Azure would scale out to: by default the largest fan-out
    (`parallel_chunks`' default is at most 32) runs whole. Fewer would still use the vendor's whole
    limit (the activities running share it: `shared.budgets`), with fewer requests in
    flight.
    """

    def __init__(self, app: Any, *, max_activities: int = 32,
                 on_result: Callable[[str, Any, Any], None] | None = None, workers: Workers | None = None):
        self._orchestrators, self._activities = registered(app)
        self._workers = workers
        set_up_worker()  # as function_app does in the Functions worker
        self._activity_pool = ThreadPoolExecutor(max_workers=max_activities, thread_name_prefix="activity")
        self._orchestration_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="orchestrator")
        self._on_result = on_result

    def run(self, orchestrator: str, input_: Any, instance_id: str) -> Any:
        """Run an orchestration to its end and return its output (JSON round-tripped)."""
        return _round_trip(self._drive(orchestrator, _round_trip(input_), instance_id))

    def close(self) -> None:
        self._activity_pool.shutdown(wait=True)
        self._orchestration_pool.shutdown(wait=True)

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _drive(self, name: str, input_: Any, instance_id: str) -> Any:
        try:
            generator = self._orchestrators[name](_Context(self, instance_id, input_))
        except KeyError:
            raise OrchestrationFailed(f"no orchestrator named {name!r} in the app") from None
        if not hasattr(generator, "send"):  # an orchestrator that returned without yielding
            return generator
        try:
            task = next(generator)
            while True:
                try:
                    value = task.wait()
                except Exception as error:  # a failed call is thrown into the orchestrator, as on replay
                    task = generator.throw(error)
                else:
                    task = generator.send(value)
        except StopIteration as finished:
            return finished.value

    def _submit_activity(self, name: str, input_: Any) -> Future:
        function = self._activities.get(name)
        if function is None:
            raise OrchestrationFailed(f"no activity named {name!r} in the app")
        payload = json.dumps(input_)
        workers = self._workers if self._workers is not None and self._workers.takes(name) else None

        def call() -> Any:
            result = workers.call(name, payload) if workers else _round_trip(function(json.loads(payload)))
            if self._on_result:
                self._on_result(name, json.loads(payload), result)
            return result

        return self._activity_pool.submit(call)

    def _submit_orchestration(self, name: str, input_: Any, instance_id: str) -> Future:
        return self._orchestration_pool.submit(self._drive, name, _round_trip(input_), instance_id)
