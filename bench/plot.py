"""The figure BENCHMARKS.md shows: throughput against its ceilings, and revocation latency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figures:
    # (label, per second) bars: the baselines, then the worker's commands.
    throughput: list[tuple[str, float]]
    # (label, sorted latencies in ms) curves.
    latencies: list[tuple[str, list[float]]]
    # (label, accounts per second) of the bulk runs.
    bulk: list[tuple[str, float]]


def plot(figures: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    from matplotlib import pyplot

    figure, (left, middle, right) = pyplot.subplots(1, 3, figsize=(15, 4.5))
    labels, rates = zip(*figures.throughput, strict=True)
    left.barh(labels, rates, color=["#999999"] * 2 + ["#1f77b4"] * (len(rates) - 2))
    left.invert_yaxis()
    left.set_xlabel("per second (2 cores)")
    left.set_title("Throughput against the no-op baselines")
    for label, waits in figures.latencies:
        shares = [(i + 1) / len(waits) for i in range(len(waits))]
        middle.plot(waits, shares, label=label)
    middle.axvline(50, color="red", linestyle="--", linewidth=1, label="p99 target, 50 ms")
    middle.axhline(0.99, color="grey", linestyle=":", linewidth=1)
    middle.set_xscale("log")
    middle.set_xlabel("push to event, ms (log)")
    middle.set_ylabel("share of revocations")
    middle.set_title("reset-session-key latency")
    middle.legend(fontsize="small")
    names, speeds = zip(*figures.bulk, strict=True)
    right.barh(names, speeds, color="#2ca02c")
    right.invert_yaxis()
    right.set_xlabel("accounts per second")
    right.set_title("Bulk revocation (reset-session-keys)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
