"""The benchmark figures as a PNG: throughput, rate-limit ratios, the peer comparison, memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results["scenarios"]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    if "throughput_1m" in scenarios:
        destinations = scenarios["throughput_1m"]["destinations"]
        axes[0].bar(_labels(destinations), [d["profiles_per_s"] for d in destinations.values()], color="#3b7dd8")
        axes[0].set_title(f"throughput, {scenarios['throughput_1m']['profiles']:,} profiles\n(profiles/s, unthrottled)")
    if "rate_limited" in scenarios:
        destinations = scenarios["rate_limited"]["destinations"]
        bars = axes[1].bar(_labels(destinations), [d["ratio"] for d in destinations.values()], color="#2e9d5b")
        axes[1].bar_label(bars, fmt="%.2f")
        axes[1].axhline(1.15, color="#c0392b", linestyle="--", label="target 1.15")
        axes[1].set_ylim(0, max([d["ratio"] for d in destinations.values()] + [1.15]) * 1.15)  # room for the labels
        axes[1].legend(loc="upper right")
        axes[1].set_title("at the vendors' limits\n(actual / requests needed at the limit's rate)")
    if "peer_createsend" in scenarios:
        peer = scenarios["peer_createsend"]
        axes[2].bar(["createsend loop", "this exporter"], [peer["peer_s"], peer["ours_s"]], color=["#999", "#3b7dd8"])
        axes[2].set_title(f"{peer['profiles']:,} profiles to Campaign Monitor\n"
                          f"(seconds, 50 ms away; {peer['speedup']}x)")
    memory = [(name, scenarios[name]["peak_rss_mb"]) for name in ("throughput_1m", "memory_10m") if name in scenarios]
    if memory:
        bars = axes[3].bar([name for name, _ in memory], [value for _, value in memory], color="#8e44ad")
        axes[3].bar_label(bars, fmt="%.1f")
        axes[3].axhline(300, color="#c0392b", linestyle="--", label="target 300 MB")
        axes[3].set_ylim(0, 360)  # room for the labels and the legend above the target line
        axes[3].legend(loc="upper right")
        axes[3].set_title("peak memory, exporter + worker (MB)")
    machine = results["machine"]
    figure.suptitle(f"{machine['cpu']}, {machine['cores']} cores, Python {machine['python']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _labels(destinations: dict[str, Any]) -> list[str]:
    return [name.replace("_", "\n") for name in destinations]
