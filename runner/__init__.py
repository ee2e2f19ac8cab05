"""Local runs: the CLI's way to run exports on this machine through function_app's own functions."""

from .orchestration import LocalRunner, OrchestrationFailed
from .runs import run_export

__all__ = ["LocalRunner", "OrchestrationFailed", "run_export"]
