"""`make dashboard-png`: the Grafana dashboard over a real run, drawn from Prometheus's answers.

A real worker (SQLite, cheap bcrypt) with its metrics port; Debian's Prometheus scraping it
every second with deploy/prometheus/prometheus.yml's job and evaluating deploy/'s alert rules;
a mixed load for about a minute: revocations, password resets with right and wrong codes from a
few devices (so the per-source guessing limit refuses some), a few poison messages (dead
letters), a burst that queues, and a reset-session-keys run over a few thousand accounts. Then
every panel of deploy/grafana/dashboards/account-reset.json is asked of Prometheus and drawn
(bench/dashboard_render.py). Everything it makes goes with it: its temp folder, its keys.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import click
import redis
import sqlalchemy as sa

from bench.bulk import seed_appid
from bench.dashboard_render import draw, panel_series
from bench.measure import drained, push
from bench.run import DEFAULT_REDIS, HASH_KEY, Bench
from bench.seed import Seeded, seed_accounts
from client.raw_message import raw_protocol2_message
from worker.db.migrate import upgrade
from worker.dev.debian_tools import DebianToolUnavailable
from worker.dev.processes import free_port
from worker.dev.prometheus import PrometheusError, PrometheusProcess, one_worker_config
from worker.security.hashing import Hasher

DEPLOY = Path(__file__).parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "account-reset.json"
JOB = "account-reset-worker"  # deploy/prometheus/prometheus.yml's
SCRAPE_INTERVAL_S = 1.0
STEP_S = 2.0
BCRYPT_ROUNDS = 4
SOURCE_LIMIT = 3
# After the load: the queue empty, then this long for the rates to fall back on the graphs.
TAIL_S = 10.0
DEADLINE_S = 120.0


@dataclass
class Load:
    """What one tick (a second) of the run sends, from accounts seeded before it."""

    queue: str
    revoked: Iterator[Seeded]
    resetting: Iterator[Seeded]
    bulk_appid: str
    ticks: int

    def tick(self, n: int) -> list[str]:
        messages = [self._revocation() for _ in range(4)]
        messages.append(self._password(next(self.resetting), right=True))
        if n % 2 == 0:  # a device guessing: SOURCE_LIMIT tries, then refused
            messages.append(self._password(next(self.resetting), right=False, device=n // 10))
        if n % 10 == 5:
            messages.extend(self._poison())
        if n == self.ticks // 3:
            bulk_id = f"dashboard-{uuid.uuid4().hex[:10]}"
            kwargs = {"every_account": True, "appid": self.bulk_appid, "command_id": bulk_id}
            messages.append(raw_protocol2_message("reset-session-keys", kwargs, self.queue))
        if n == 2 * self.ticks // 3:  # a burst that waits in the queue for a few seconds
            messages.extend(self._revocation() for _ in range(400))
        return messages

    def _revocation(self) -> str:
        account = next(self.revoked)
        payload = {"accountid": account.accountid, "requester_accountid": account.accountid}
        return raw_protocol2_message("reset-session-key", payload, self.queue)

    def _password(self, account: Seeded, *, right: bool, device: int = 0) -> str:
        payload = {"username": account.username, "new-password": "dashboard-new-password",
                   "secret-code": account.code if right else f"guess-{account.code}"}  # fmt: skip
        if not right:
            payload["source"] = f"device-{device}"
        return raw_protocol2_message("reset-account-password", payload, self.queue)

    def _poison(self) -> list[str]:
        return [
            raw_protocol2_message("reset-account-password", {}, self.queue, body=b"{not json"),
            raw_protocol2_message("reset-pasword", {}, self.queue),
        ]


def seeded_load(database_url: str, queue: str, *, seconds: int, bulk_accounts: int) -> Load:
    engine = sa.create_engine(database_url)
    hasher = Hasher(key=HASH_KEY, bcrypt_rounds=BCRYPT_ROUNDS)
    revoked = seed_accounts(engine, hasher, 200, codes=False)
    resetting = seed_accounts(engine, hasher, 2 * seconds, codes=True)
    bulk_appid, _ = seed_appid(engine, bulk_accounts)
    engine.dispose()
    return Load(queue, cycle(revoked), iter(resetting), bulk_appid, seconds)


def drive(client: redis.Redis, load: Load) -> None:
    """A tick a second, on the clock."""
    started = time.monotonic()
    for n in range(load.ticks):
        time.sleep(max(started + n - time.monotonic(), 0.0))  # the steady rate
        push(client, load.queue, load.tick(n))


def until(check: Callable[[], bool], what: str) -> None:
    """Wait for `check()` to be true, within DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what}: not after {DEADLINE_S:g} s")
        time.sleep(0.2)  # Redis and Prometheus give no notice; the deadline bounds it


@contextmanager
def prometheus_on(work: Path, metrics_port: int) -> Iterator[PrometheusProcess]:
    config = one_worker_config(
        DEPLOY / "prometheus" / "prometheus.yml", metrics_port=metrics_port,
        interval_s=SCRAPE_INTERVAL_S, rule_files=[DEPLOY / "prometheus" / "alerts.yml"],
    )  # fmt: skip
    (work / "prometheus").mkdir()
    prometheus = PrometheusProcess(config, work / "prometheus").start()
    try:
        yield prometheus
    finally:
        prometheus.stop()


def run_and_render(
    work: Path, redis_url: str, *, seconds: int, bulk_accounts: int, output: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.ping()  # before anything starts: a Redis that is not there is one line
    database_url = f"sqlite:///{work / 'dashboard.db'}"
    upgrade(database_url)
    bench = Bench(redis_url, work, BCRYPT_ROUNDS)
    (work / "metrics").mkdir()
    env = bench.env(database_url, concurrency=2) | {
        "ACCOUNT_RESET_METRICS_PORT": str(free_port()),
        "ACCOUNT_RESET_MAX_SOURCE_ATTEMPTS": str(SOURCE_LIMIT),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
    }
    queue = env["ACCOUNT_RESET_QUEUE"]
    load = seeded_load(database_url, queue, seconds=seconds, bulk_accounts=bulk_accounts)
    try:
        with (
            bench.worker("worker", env, "dashboard"),
            prometheus_on(work, int(env["ACCOUNT_RESET_METRICS_PORT"])) as prometheus,
        ):
            until(lambda: prometheus.last_scrape(JOB) > 0, "Prometheus scraping the worker")
            start = time.time()
            drive(client, load)
            until(lambda: drained(client, queue), f"{queue} drained")
            end = time.time() + TAIL_S
            until(lambda: prometheus.last_scrape(JOB) > end, "Prometheus scraping the tail")
            render(prometheus, start=start, end=end, output=output)
    finally:
        for key in client.scan_iter(f"{queue}*", count=1000):
            client.delete(key)
        client.close()


def render(prometheus: PrometheusProcess, *, start: float, end: float, output: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    series = {
        panel["title"]: panel_series(prometheus, panel, start=start, end=end, step_s=STEP_S)
        for panel in dashboard["panels"]
    }
    draw(dashboard, series, start=start, end=end, output=output)
    shown = [title for title, found in series.items() if found]
    click.echo(f"{output}: {len(shown)} of {len(series)} panels with data")
    for title, found in series.items():
        click.echo(f"  {'data   ' if found else 'no data'}  {title}")


@click.command()
@click.option("--output", type=click.Path(path_type=Path), default=Path("docs/dashboard.png"),
              show_default=True, help="The PNG to write.")  # fmt: skip
@click.option("--seconds", type=click.IntRange(10, 600), default=75, show_default=True,
              help="How long the load runs.")  # fmt: skip
@click.option("--bulk-accounts", type=click.IntRange(1), default=3000, show_default=True,
              help="Accounts the reset-session-keys run ends the sessions of.")  # fmt: skip
@click.option("--redis-url", default=DEFAULT_REDIS, show_default=True)
def main(output: Path, seconds: int, bulk_accounts: int, redis_url: str) -> None:
    """Draw deploy/grafana/dashboards/account-reset.json over a real run into OUTPUT."""
    with tempfile.TemporaryDirectory(prefix="account-reset-dashboard-") as work:
        try:
            run_and_render(
                Path(work), redis_url, seconds=seconds, bulk_accounts=bulk_accounts, output=output
            )
        except (redis.ConnectionError, DebianToolUnavailable, PrometheusError) as failed:
            raise click.ClickException(str(failed)) from None


if __name__ == "__main__":
    main()
