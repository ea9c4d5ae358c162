"""The observer's Prometheus side: each report is the metric, name and labels, dashboards read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from worker.ops.metrics import PROMETHEUS

REPORTS: list[tuple[Callable[[], None], str, dict[str, str]]] = [
    (
        lambda: PROMETHEUS.command_processed(command="unit-c", outcome="success", seconds=0.01),
        "account_reset_commands_total",
        {"command": "unit-c", "outcome": "success"},
    ),
    (
        lambda: PROMETHEUS.command_processed(command="unit-d", outcome="unit-o", seconds=0.01),
        "account_reset_command_duration_seconds_count",
        {"command": "unit-d"},
    ),
    (
        lambda: PROMETHEUS.published(by="unit-by", delay_s=-1.0),
        "account_reset_publish_delay_seconds_count",
        {"by": "unit-by"},
    ),
    (
        lambda: PROMETHEUS.retried(command="unit-c", fault="OperationalError"),
        "account_reset_retries_total",
        {"command": "unit-c", "fault": "OperationalError"},
    ),
    (
        lambda: PROMETHEUS.dead_lettered(reason="unit-reason"),
        "account_reset_dead_letters_total",
        {"reason": "unit-reason"},
    ),
    (PROMETHEUS.guess_checked, "account_reset_guesses_checked_total", {}),
    (
        lambda: PROMETHEUS.guess_refused(limit="unit-limit"),
        "account_reset_guesses_refused_total",
        {"limit": "unit-limit"},
    ),
    (
        lambda: PROMETHEUS.refused_by_redis(error="UNIT"),
        "account_reset_redis_refusals_total",
        {"error": "UNIT"},
    ),
]


@pytest.mark.parametrize(("report", "name", "labels"), REPORTS)
def test_each_report_counts_in_its_metric(
    report: Callable[[], None], name: str, labels: dict[str, str]
) -> None:
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    report()
    assert REGISTRY.get_sample_value(name, labels) == before + 1
