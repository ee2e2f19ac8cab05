"""The engine: plan a run, export one chunk to one destination, finish a run.

These are the bodies of the Durable activities in `function_app.py`; the local runner
calls the very same activities. Each takes and returns small JSON.
"""

from .checks import check_export
from .chunks import export_chunk
from .planning import PlanError, load_definitions, plan_next_part, plan_run
from .reports import finish_run, progress, starting
from .services import Services

__all__ = ["PlanError", "Services", "check_export", "export_chunk", "finish_run", "load_definitions", "plan_next_part",
           "plan_run", "progress", "starting"]
