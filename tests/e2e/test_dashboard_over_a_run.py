"""The Grafana dashboard and the alert rules over a real run (issue 16, finding 13): a real
Prometheus (Debian's, worker/dev/debian_tools.py) scrapes a real worker that answers wrong
reset codes until a guessing limit refuses them; every panel's query then shows data but those
of what never happened (dead letters, retries, Redis refusals), and the guessing alert fires.

Grafana itself is on no registry this project reaches (PyPI, npm, Debian), so the panels are
the dashboard's own PromQL, asked of Prometheus as Grafana would ask it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.dashboard_render import Series, draw, panel_series
from client import AccountResetClient, ClientSettings
from tests.support.databases import migrated_sqlite
from tests.support.debian_tools import prometheus_server
from tests.support.guessing import source_limited_env, wrong_codes_from_one_device
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess
from worker.dev.prometheus import PrometheusProcess, one_worker_config
from worker.security.hashing import Hasher

DEPLOY = Path(__file__).parents[2] / "deploy"
JOB = "account-reset-worker"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "account-reset.json"
DEADLINE_S = 60.0
# What Grafana puts for $__rate_interval at a 1 s scrape interval, rounded up.
RATE_INTERVAL = "30s"
# Panels of things this run never does.
NOTHING_TO_SHOW = {"Dead letters, by reason", "Transient faults retried", "Commands Redis refused"}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], PrometheusProcess]]:
    """How to start a Prometheus on a worker's metrics port, with deploy/'s rules, scraping and
    evaluating every second; stopped at the end."""
    started: list[PrometheusProcess] = []

    def start(metrics_port: int) -> PrometheusProcess:
        config = one_worker_config(
            DEPLOY / "prometheus" / "prometheus.yml", metrics_port=metrics_port,
            interval_s=1, rule_files=[DEPLOY / "prometheus" / "alerts.yml"],
        )  # fmt: skip
        started.append(PrometheusProcess(config, tmp_path).start(prometheus_server()))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def query(prometheus: PrometheusProcess, expression: str) -> list[dict[str, Any]]:
    """An instant query's result (an error from Prometheus fails the test)."""
    return prometheus.query(expression.replace("$__rate_interval", RATE_INTERVAL))


def panels() -> list[dict[str, Any]]:
    document = json.loads(DASHBOARD.read_text())
    found = document["panels"]
    assert isinstance(found, list)
    return found


def test_finding_13_every_panel_shows_the_run_and_the_guessing_alert_fires(
    redis_url: str,
    redis_client: redis.Redis,
    hasher: Hasher,
    tmp_path: Path,
    prometheus: Callable[[int], PrometheusProcess],
) -> None:
    """Six wrong codes from one device, MAX_SOURCE_ATTEMPTS=3, through a worker that Prometheus
    scrapes: each panel but those of dead letters, retries and Redis refusals has data, and
    AccountResetGuessingCeilingHit fires for the `source` limit. `make dashboard-png`'s renderer
    (bench/dashboard_render.py) draws the run from the same Prometheus: the same panels have
    series over the run, and the picture is a PNG."""
    database_url = migrated_sqlite(tmp_path)
    seeder = Seeder(database_url, hasher)
    prefix = unique("dashboard-run")
    env = source_limited_env(redis_url=redis_url, database_url=database_url, prefix=prefix)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    client = AccountResetClient(
        ClientSettings(
            broker_url=redis_url,
            queue=env["ACCOUNT_RESET_QUEUE"],
            events_stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
        )
    )
    try:
        server = prometheus(int(env["ACCOUNT_RESET_METRICS_PORT"]))
        started_at = time.time()
        poll_until(
            lambda: query(server, 'up{job="account-reset-worker"} == 1'),
            DEADLINE_S, "Prometheus scraping the worker",
        )  # fmt: skip
        sent = wrong_codes_from_one_device(client, seeder, source=unique("device-id"))
        worker.outcomes(redis_client, set(sent), DEADLINE_S)

        def empty_panels() -> set[str] | None:
            empty = {
                panel["title"]
                for panel in panels()
                if not any(query(server, t["expr"]) for t in panel["targets"])
            }
            return empty if empty == NOTHING_TO_SHOW else None

        poll_until(empty_panels, DEADLINE_S, f"every panel but {sorted(NOTHING_TO_SHOW)} shown")
        firing = poll_until(
            lambda: query(
                server,
                'ALERTS{alertname="AccountResetGuessingCeilingHit", alertstate="firing"}',
            ),
            DEADLINE_S, "AccountResetGuessingCeilingHit firing",
        )  # fmt: skip
        refused = query(server, "sum(account_reset_guesses_refused_total)")
        # The range ends once scraped past: its last step then sees every sample before it.
        ended_at = time.time() + 1
        poll_until(lambda: server.last_scrape(JOB) > ended_at, DEADLINE_S, "a scrape past the end")
        drawn = tmp_path / "dashboard.png"
        series = rendered(server, start=started_at, end=ended_at, output=drawn)
    finally:
        client.close()
        worker.stop()
        worker.remove_keys(redis_url)
        for key in redis_client.scan_iter(f"{prefix}:*", count=1000):
            redis_client.delete(key)
        seeder.engine.dispose()

    assert [alert["metric"]["limit"] for alert in firing] == ["source"]
    assert refused[0]["value"][1] == "3"
    assert {title for title, found in series.items() if not found} == NOTHING_TO_SHOW
    assert drawn.read_bytes().startswith(b"\x89PNG")


def rendered(
    server: PrometheusProcess, *, start: float, end: float, output: Path
) -> dict[str, list[Series]]:
    """The dashboard drawn into `output` by the renderer of `make dashboard-png`: each panel's
    series over the run."""
    dashboard = json.loads(DASHBOARD.read_text())
    series = {
        panel["title"]: panel_series(server, panel, start=start, end=end, step_s=1)
        for panel in dashboard["panels"]
    }
    draw(dashboard, series, start=start, end=end, output=output)
    return series
