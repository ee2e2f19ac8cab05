"""Profiles exported as Customer Insights writes them, to every destination at once:

    python -m bench.customer_insights [--profiles 1000000] [--partitions 4] [--destination snapchat ...]
                                      [--unquoted]

The benchmarks' segment (`bench.segments.upload_cdm`) as a CDM folder: `model.json` and
headerless partitions under a dated snapshot folder, every field quoted
(CsvStyle.QuoteAlways); the exports name the table's folder (README, "Segments exported
by Customer Insights"). Runs them as throughput_1m does (stand-ins unthrottled, one
exporter process), checks every count, and prints the figures as JSON. Not one of the
scenarios `make bench` runs: those are the issue's five, on a plain segment file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .harness import connections_for, environment, run_exporter
from .scenarios import DESTINATIONS, UNTHROTTLED, bench_exports, check_reports, other_pids
from .segments import upload_cdm


def measure(profiles: int, partitions: int = 4, destinations: tuple[str, ...] = DESTINATIONS,
            quote_always: bool = True) -> dict[str, Any]:
    with environment(rate_limited=False) as (storage, sandbox, env, folder):
        table = upload_cdm(storage, "CustomerInsights_bench/BlobExport", "Profiles", profiles, partitions, quote_always)
        connections = connections_for(sandbox, requests_per_second=UNTHROTTLED, parallel_chunks=4)
        measured = run_exporter(env, folder, connections, bench_exports(table, destinations), other_pids(env))
    check_reports(measured.reports, profiles)
    return {"profiles": profiles, "partitions": partitions, "quote_always": quote_always,
            "wall_s": measured.wall_s, "cpu_s": measured.cpu_s, "peak_rss_mb": measured.peak_rss_mb,
            "other_processes_cpu_s": measured.others_cpu_s, "segment_blocks": measured.segment_blocks,
            "destinations": {report["destination"]["type"]: {
                "wall_s": measured.run_walls[name], "profiles_per_s": round(profiles / measured.run_walls[name]),
                "partitions_read": [segment["rows"] for segment in report["segments"]]}
                for name, report in measured.reports.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--destination", action="append", choices=DESTINATIONS,
                        help="repeat for several; all by default")
    parser.add_argument("--unquoted", action="store_true", help="fields quoted only where needed (none here)")
    args = parser.parse_args()
    figures = measure(args.profiles, args.partitions, tuple(args.destination or DESTINATIONS), not args.unquoted)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
