"""The benchmark figures as a text table, next to the targets of the scale issue."""

from __future__ import annotations

from typing import Any

TARGETS = {"throughput_1m": {"wall_s": 60, "cpu_s": 40, "peak_rss_mb": 300},
           "rate_limited": {"ratio": 1.15}, "peer_createsend": {"speedup": 5}, "memory_10m": {"peak_rss_mb": 300}}


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"{results['machine']['memory_gb']} GB, Python {results['machine']['python']}", ""]
    scenarios = results["scenarios"]

    def row(scenario: str, figure: str, value: Any, target: Any = None, better: str = "lower") -> None:
        verdict = ""
        if target is not None:
            met = value <= target if better == "lower" else value >= target
            verdict = f"{'met' if met else 'MISSED'} (target {'<=' if better == 'lower' else '>='} {target})"
        lines.append(f"{scenario:<18} {figure:<46} {value!s:>12}  {verdict}")

    def each_process(s: dict[str, Any], scenario: str) -> None:
        if len(s.get("peak_rss_mb_each_process") or ()) > 1:  # peak_rss_mb is their sum's peak
            each = " + ".join(map(str, s["peak_rss_mb_each_process"]))
            row(scenario, "peak_rss_mb of exporter + worker(s), each", each)

    def median_of(s: dict[str, Any]) -> str:
        return f" (median of {len(s['runs'])})" if len(s.get("runs", ())) > 1 else ""

    if "throughput_1m" in scenarios:
        s = scenarios["throughput_1m"]
        median = median_of(s)
        for figure in ("wall_s", "cpu_s", "peak_rss_mb"):
            row("throughput_1m", figure + median, s[figure], TARGETS["throughput_1m"][figure])
        each_process(s, "throughput_1m")
        for destination, figures in s["destinations"].items():
            row("throughput_1m", f"{destination} profiles/s", figures["profiles_per_s"])
    if "rate_limited" in scenarios:
        for destination, figures in scenarios["rate_limited"]["destinations"].items():
            median = f" (median of {figures['runs']})" if figures.get("runs", 1) > 1 else ""
            row("rate_limited", f"{destination} actual/floor s{median}",
                f"{figures['actual_s']}/{figures['floor_s']}")
            row("rate_limited", f"{destination} ratio", figures["ratio"], TARGETS["rate_limited"]["ratio"])
            row("rate_limited", f"{destination} requests (throttled)",
                f"{figures['requests']} ({figures['throttled']})", None)
            if "cpu_bound_s" in figures:
                cpu = " / ".join(str(figures["cpu_s"].get(name, "?")) for name in ("exporter", "stand_ins", "azurite"))
                row("rate_limited", f"{destination} CPU s exporter/stand-ins/Azurite", cpu)
                row("rate_limited", f"{destination} cpu_bound_s (all CPU / cores)", figures["cpu_bound_s"])
    if "peer_createsend" in scenarios:
        s = scenarios["peer_createsend"]
        row("peer_createsend", "peer_s / ours_s", f"{s['peer_s']}/{s['ours_s']}")
        row("peer_createsend", "speedup", s["speedup"], TARGETS["peer_createsend"]["speedup"], better="higher")
    if "memory_10m" in scenarios:
        s = scenarios["memory_10m"]
        median = median_of(s)
        row("memory_10m", "wall_s" + median, s["wall_s"])
        row("memory_10m", "peak_rss_mb" + median, s["peak_rss_mb"], TARGETS["memory_10m"]["peak_rss_mb"])
        each_process(s, "memory_10m")
    if "sandbox_capacity" in scenarios:
        row("sandbox_capacity", "requests/s (one stand-in)", scenarios["sandbox_capacity"]["requests_per_s"])
    return "\n".join(lines)
