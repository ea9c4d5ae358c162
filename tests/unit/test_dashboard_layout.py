"""`make dashboard-png` (bench/dashboard_render.py) lays out the shipped Grafana dashboard as
Grafana does (issue 16, finding 13: a picture of the dashboard in the docs): every panel on the
24-column grid, none over another, series named by their legendFormat."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from bench.dashboard_render import GRID_COLUMNS, cells, expression, formatted, legend

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "account-reset.json"


def test_finding_13_every_panel_of_the_shipped_dashboard_is_placed_and_none_overlaps() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    placed = cells(dashboard)

    assert len(placed) == len(dashboard["panels"]) == 17
    assert all(c.x >= 0 and c.w > 0 and c.x + c.w <= GRID_COLUMNS for _, c in placed)
    overlapping = [
        (a["title"], b["title"]) for (a, ca), (b, cb) in combinations(placed, 2) if ca.overlaps(cb)
    ]
    assert overlapping == []


def test_finding_13_series_are_named_and_valued_as_grafana_shows_them() -> None:
    expr = "sum by (limit) (rate(account_reset_guesses_refused_total[$__rate_interval]))"

    assert "$__" not in expression(expr)
    assert legend("refused: {{limit}} limit", {"limit": "source"}, expr) == "refused: source limit"
    assert legend("__auto", {}, "sum(up)") == "sum(up)"
    assert legend("__auto", {"__name__": "up", "job": "w"}, "up") == '{job="w"}'
    assert formatted(0.0125, "percentunit") == "1.25%"
    assert formatted(0.042, "s") == "42 ms"
    assert formatted(2500, "ops") == "2.5K ops/s"
