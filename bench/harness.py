"""What every benchmark scenario needs: storage, stand-ins, a segment, and a measured exporter.

The exporter runs in a process of its own (`python -m bench.exporter`, with its worker
process for chunk activities, as local runs have), started from here, so its CPU time and
peak memory are its own: `os.wait4` gives user+sys seconds of the exporter and the workers
it waited for, and the exporter samples their resident sets summed. Azurite (node) and
the stand-ins (another Python process) are measured apart or not at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.azurite import Azurite
from sandbox.remote import RemoteSandbox
from shared.state import Storage

from .procfs import cpu_s
from .segments import upload

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    """One exporter process: its figures and the reports of the runs it made."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    reports: dict[str, dict[str, Any]]
    run_walls: dict[str, float]
    others_cpu_s: dict[str, float]  # CPU the stand-ins and Azurite used meanwhile
    segment_blocks: dict[str, int]  # blocks the plans read from storage, and took from another plan instead
    peak_rss_mb_each: list[float]  # the exporter's own peak, then each worker process's
    # Each run's CPU while it sent (its report's duration_s): {run: {"exporter": .., "stand_ins": .., "azurite": ..}}
    sending_cpu_s: dict[str, dict[str, float]]


@contextmanager
def environment(*, rate_limited: bool, latency_s: float = 0.0, tls: bool = False):
    """Azurite and the stand-in processes; yields (storage, sandbox, env for the exporter)."""
    with Azurite() as azurite, RemoteSandbox(rate_limited=rate_limited, latency_s=latency_s, tls=tls) as sandbox, \
            tempfile.TemporaryDirectory(prefix="bench-") as folder:
        secrets = os.path.join(folder, "secrets.json")
        sandbox.write_secrets(secrets)
        storage = Storage.from_connection_string(azurite.connection_string)
        storage.ensure_containers()
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "LOCAL_SECRETS_FILE": secrets,
               "ALLOW_LOCAL_ENDPOINTS": "true", "PYTHONPATH": str(ROOT)}
        if tls:
            env["REQUESTS_CA_BUNDLE"] = sandbox.ca_path
        env["BENCH_PIDS"] = json.dumps({"stand_ins": sandbox.pids, "azurite": [azurite.pid]})
        yield storage, sandbox, env, folder


def segment(storage: Storage, profiles: int) -> str:
    path = f"bench/{profiles}.csv"
    started = time.monotonic()
    upload(storage, path, profiles)
    print(f"  segment of {profiles:,} profiles uploaded in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return path


def run_exporter(env: dict[str, str], folder: str, connections: list[dict[str, Any]],
                 exports: list[dict[str, Any]], others: dict[str, list[int]] | None = None) -> Measured:
    """Run `exports` at once in one exporter process; measure it (and the CPU of `others` pids)."""
    others = others or {}
    before = {name: cpu_s(pids) for name, pids in others.items()}
    job = os.path.join(folder, f"job-{time.monotonic_ns()}.json")
    result = job + ".result"
    Path(job).write_text(json.dumps({"connections": connections, "exports": exports}))
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "bench.exporter", job, result], cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"the exporter process failed (status {status})")
    outcome = json.loads(Path(result).read_text())
    others_cpu = {name: round(cpu_s(pids) - before[name], 1) for name, pids in others.items()}
    # The sampled sum is what they held together (50 ms apart); a process's own peak
    # between two samples is its high-water mark, which the exporter read before its
    # workers stopped. (Not this wait's ru_maxrss: Linux carries the spawning process's
    # peak over exec, so it would be this bench process's size once it has been larger.)
    peak = max([outcome.get("peak_rss_mb", 0.0), *outcome.get("peak_rss_mb_each", [])])
    return Measured(round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2), round(peak, 1),
                    outcome["reports"], outcome["walls"], others_cpu, outcome["segment_blocks"],
                    outcome.get("peak_rss_mb_each", []), outcome["sending_cpu_s"])


def connections_for(sandbox: RemoteSandbox, **settings: Any) -> list[dict[str, Any]]:
    connections = sandbox.connections()
    for connection in connections:
        connection["settings"].update(settings)
    return connections


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else round((ordered[middle - 1] + ordered[middle]) / 2, 3)
