"""The metric names a PromQL expression reads (promql-parser's syntax tree), and those the worker
exports, so a test can tell a dashboard or an alert that queries a metric no worker serves."""

from __future__ import annotations

import re
from collections.abc import Iterator

import promql_parser
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from worker.ops.metrics import _QueueDepth, metrics

PREFIX = "account_reset_"

# Grafana's range variables, replaced by a duration so that the expression parses.
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)\b")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def metric_names(expression: str) -> set[str]:
    """Every metric name `expression` selects (ParseError if it is not PromQL)."""
    return set(_selected(promql_parser.parse(GRAFANA_RANGES.sub("5m", expression))))


def _selected(node: object) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector) and node.name:
        yield node.name
    for child in ("expr", "lhs", "rhs", "param", "vector_selector"):
        if (value := getattr(node, child, None)) is not None:
            yield from _selected(value)
    for argument in getattr(node, "args", None) or ():
        yield from _selected(argument)


def exported_names() -> set[str]:
    """The series names the worker's metrics endpoint serves (worker/ops/metrics.py): its
    counters and histograms, as this process registered them, and the queue depth read at each
    scrape."""
    metrics()
    families: list[Metric] = [
        family for family in REGISTRY.collect() if family.name.startswith(PREFIX)
    ]
    families.extend(_QueueDepth(dict).collect())
    return {
        family.name + suffix
        for family in families
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }
