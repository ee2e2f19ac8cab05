"""Local runs: the CLI's way to run exports on this machine through function_app's own functions.

What is exported here is imported when first asked for, so that a worker process
(`runner.workers`) can be started before this process imports the app.
"""

from importlib import import_module
from typing import Any

_WHERE = {"LocalRunner": ".orchestration", "OrchestrationFailed": ".orchestration", "run_export": ".runs",
          "Workers": ".workers", "local_workers": ".workers"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name], __name__), name)
