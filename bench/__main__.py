"""`make bench`: run the scenarios, write bench/results/latest.json and latest.png, print a table.

    python -m bench [--only throughput_1m,rate_limited,...] [--scale 0.1]

`--scale` shrinks every scenario's profile count (a quick look; the README quotes full runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .chart import draw
from .scenarios import SCENARIOS
from .table import table

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str | int]:
    import os

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return {"cpu": model or platform.processor(), "cores": os.cpu_count() or 0, "memory_gb": memory_gb,
            "python": platform.python_version(), "system": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every scenario's profile count")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    results = {"machine": machine(), "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "scale": args.scale, "scenarios": {}}
    for name in chosen:
        print(f"{name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        scenario = SCENARIOS[name]
        defaults = scenario.__defaults__ or ()
        kwargs = {}
        if args.scale != 1.0 and defaults and isinstance(defaults[0], int) and name != "sandbox_capacity":
            kwargs["profiles"] = max(10_000, int(defaults[0] * args.scale))
        results["scenarios"][name] = {**scenario(**kwargs), "scenario_s": round(time.monotonic() - started, 1)}
        print(json.dumps(results["scenarios"][name]), file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    draw(results, RESULTS / "latest.png")
    print(table(results))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
