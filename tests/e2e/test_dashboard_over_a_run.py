"""The Grafana dashboard and the alert rules over a real run (issue 16, finding 13): a real
Prometheus (Debian's, tests/support/debian_tools.py) scrapes a real worker that answers wrong
reset codes until a guessing limit refuses them; every panel's query then shows data but those
of what never happened (dead letters, retries, Redis refusals), and the guessing alert fires.

Grafana itself is on no registry this project reaches (PyPI, npm, Debian), so the panels are
the dashboard's own PromQL, asked of Prometheus as Grafana would ask it."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from client import AccountResetClient, ClientSettings
from tests.support.databases import migrated_sqlite
from tests.support.debian_tools import prometheus_server
from tests.support.guessing import source_limited_env, wrong_codes_from_one_device
from tests.support.ids import unique
from tests.support.probes import http_get, http_until
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess
from worker.dev.processes import free_port
from worker.security.hashing import Hasher

DEPLOY = Path(__file__).parents[2] / "deploy"
DEADLINE_S = 60.0
# What Grafana puts for $__rate_interval at a 1 s scrape interval, rounded up.
RATE_INTERVAL = "30s"
# Panels of things this run never does.
NOTHING_TO_SHOW = {"Dead letters, by reason", "Transient faults retried", "Commands Redis refused"}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Callable[[int], None]]]:
    """A Prometheus on a free port, with deploy/'s rules, scraping and evaluating every second:
    its URL, and how to start it on a worker's metrics port."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    process: subprocess.Popen[bytes] | None = None

    def start(metrics_port: int) -> None:
        nonlocal process
        shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        [job] = shipped["scrape_configs"]
        # One worker on loopback: static, where compose finds replicas by DNS.
        job.pop("dns_sd_configs")
        job.pop("relabel_configs")
        job["static_configs"] = [
            {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"service": "worker"}}
        ]
        shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        shipped["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
        config.write_text(yaml.safe_dump(shipped))
        with (tmp_path / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [str(prometheus_server()), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=log,
            )  # fmt: skip
        assert http_until(f"http://127.0.0.1:{port}/-/ready")[0] == 200

    yield f"http://127.0.0.1:{port}", start
    if process is not None:
        process.terminate()
        process.wait(timeout=DEADLINE_S)


def query(prometheus_url: str, expression: str) -> list[dict[str, Any]]:
    """An instant query's result (an error from Prometheus fails the test)."""
    text = expression.replace("$__rate_interval", RATE_INTERVAL)
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': text})}"
    status, body = http_get(url)
    answer = json.loads(body)
    assert (status, answer["status"]) == (200, "success"), (expression, answer)
    result = answer["data"]["result"]
    assert isinstance(result, list)
    return result


def panels() -> list[dict[str, Any]]:
    document = json.loads((DEPLOY / "grafana" / "dashboards" / "account-reset.json").read_text())
    found = document["panels"]
    assert isinstance(found, list)
    return found


def test_finding_13_every_panel_shows_the_run_and_the_guessing_alert_fires(
    redis_url: str,
    redis_client: redis.Redis,
    hasher: Hasher,
    tmp_path: Path,
    prometheus: tuple[str, Callable[[int], None]],
) -> None:
    """Six wrong codes from one device, MAX_SOURCE_ATTEMPTS=3, through a worker that Prometheus
    scrapes: each panel but those of dead letters, retries and Redis refusals has data, and
    AccountResetGuessingCeilingHit fires for the `source` limit."""
    prometheus_url, start_prometheus = prometheus
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
        start_prometheus(int(env["ACCOUNT_RESET_METRICS_PORT"]))
        poll_until(
            lambda: query(prometheus_url, 'up{job="account-reset-worker"} == 1'),
            DEADLINE_S, "Prometheus scraping the worker",
        )  # fmt: skip
        sent = wrong_codes_from_one_device(client, seeder, source=unique("device-id"))
        worker.outcomes(redis_client, set(sent), DEADLINE_S)

        def empty_panels() -> set[str] | None:
            empty = {
                panel["title"]
                for panel in panels()
                if not any(query(prometheus_url, t["expr"]) for t in panel["targets"])
            }
            return empty if empty == NOTHING_TO_SHOW else None

        poll_until(empty_panels, DEADLINE_S, f"every panel but {sorted(NOTHING_TO_SHOW)} shown")
        firing = poll_until(
            lambda: query(
                prometheus_url,
                'ALERTS{alertname="AccountResetGuessingCeilingHit", alertstate="firing"}',
            ),
            DEADLINE_S, "AccountResetGuessingCeilingHit firing",
        )  # fmt: skip
        refused = query(prometheus_url, "sum(account_reset_guesses_refused_total)")
    finally:
        client.close()
        worker.stop()
        worker.remove_keys(redis_url)
        for key in redis_client.scan_iter(f"{prefix}:*", count=1000):
            redis_client.delete(key)
        seeder.engine.dispose()

    assert [alert["metric"]["limit"] for alert in firing] == ["source"]
    assert refused[0]["value"][1] == "3"
