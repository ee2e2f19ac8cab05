"""Local runs: the CLI's way to run exports on this machine through function_app's own functions."""

from .orchestration import LocalRunner, OrchestrationFailed
from .runs import run_export
from .workers import Workers, local_workers

__all__ = ["LocalRunner", "OrchestrationFailed", "Workers", "local_workers", "run_export"]
