"""`make bench`: the worker against Celery's no-op ceiling and bcrypt's, in one run.

1. baselines: a plain Celery no-op task on Celery's defaults (bench/plain_noop_app.py, the
   headline), and a no-op with the worker's own broker, transport, pool, concurrency and
   acknowledgement settings (bench/noop_app.py); N messages pushed then drained;
2. reset-session-key: N commands over N accounts drained, on SQLite and PostgreSQL, and the
   latency from push to event at a steady quarter of that throughput, alone and beside a burst
   of password resets (bench/mixed.py);
3. reset-account-password against cores / (one bcrypt at the configured cost);
4. the peak resident memory of the worker's processes together;
5. reset-session-key at each concurrency from 1 to the number of cores (at least 2);
6. bulk revocation (reset-session-keys) over an appid of many accounts, every account and
   listed, on PostgreSQL, SQLite and MariaDB (bench/bulk.py);
7. a figure of it all (bench/plot.py), docs/benchmarks.png.

Real Redis, PostgreSQL and worker processes. `--smoke` runs it small, for CI.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import redis
import sqlalchemy as sa

from bench.bulk import reset_counts, run_messages, seed_appid, timed_run
from bench.footprint import Footprint, measured
from bench.measure import Latency, drain_rate, latency_at
from bench.mixed import latency_beside_a_burst
from bench.plot import Figures, plot
from bench.processes import MemorySampler, cpu_count
from bench.report import Row, machine, table
from bench.seed import APPID, Seeded, applied, seed_accounts
from client.raw_message import raw_protocol2_message
from worker.broker.transport import reserved_key
from worker.db.migrate import upgrade
from worker.dev.databases import scratch_database
from worker.dev.processes import WorkerProcess, nodename
from worker.security.hashing import Hasher

HASH_KEY = "bench-hash-key-of-sixteen-plus"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MARIADB = "mariadb://root@127.0.0.1:3306/test"
FIGURE = Path("docs/benchmarks.png")
MB = 1024 * 1024


@dataclass
class Bench:
    redis_url: str
    work: Path
    bcrypt_rounds: int
    peak_memory: dict[str, tuple[int, int]] = field(default_factory=dict)

    def env(self, database_url: str, concurrency: int) -> dict[str, str]:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
        return keep | {
            # The smoke run's cheap bcrypt cost is one only development accepts.
            "ACCOUNT_RESET_ENVIRONMENT": "development" if self.bcrypt_rounds < 10 else "production",
            "ACCOUNT_RESET_BROKER_URL": self.redis_url,
            "ACCOUNT_RESET_DATABASE_URL": database_url,
            "ACCOUNT_RESET_QUEUE": name,
            "ACCOUNT_RESET_EVENTS_STREAM": f"{name}:events",
            "ACCOUNT_RESET_DEAD_LETTERS_KEY": f"{name}:dead-letters",
            "ACCOUNT_RESET_ATTEMPTS_KEY_PREFIX": f"{name}:code-attempts",
            "ACCOUNT_RESET_HEALTH_FILE": str(self.work / f"{name}.health"),
            "ACCOUNT_RESET_HASH_KEY": HASH_KEY,
            "ACCOUNT_RESET_BCRYPT_ROUNDS": str(self.bcrypt_rounds),
            "ACCOUNT_RESET_APPID": APPID,
            "ACCOUNT_RESET_WORKER_CONCURRENCY": str(concurrency),
        }

    @contextmanager
    def worker(self, app: str, env: dict[str, str], label: str) -> Iterator[WorkerProcess]:
        # A log of each node's own: waiting for "ready" in a shared one would see another's.
        log = self.work / f"{env['ACCOUNT_RESET_QUEUE']}-{uuid.uuid4().hex[:6]}.log"
        concurrency = env["ACCOUNT_RESET_WORKER_CONCURRENCY"]
        running = WorkerProcess(env, log, app=app, nodename=nodename("bench"))
        running.start(f"--concurrency={concurrency}", "--without-heartbeat").wait_until_ready()
        client = redis.Redis.from_url(self.redis_url)
        try:
            with MemorySampler(running) as memory:
                yield running
            self.peak_memory[label] = (memory.peak_bytes, memory.peak_rss_sum)
        finally:
            running.stop()
            queue = env["ACCOUNT_RESET_QUEUE"]
            client.delete(*[queue, f"{queue}:reserved", f"{queue}:unacked",
                            f"{queue}:unacked_index", env["ACCOUNT_RESET_EVENTS_STREAM"],
                            env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]])  # fmt: skip
            client.close()

    def noop(self, database_url: str, concurrency: int, count: int) -> float:
        env = self.env(database_url, concurrency)
        queue = env["ACCOUNT_RESET_QUEUE"]
        messages = [raw_protocol2_message("noop", {}, queue) for _ in range(count)]
        with self.worker("bench.noop_app", env, f"noop c={concurrency}"):
            return drain_rate(redis.Redis.from_url(self.redis_url), queue, messages)

    def plain_noop(self, database_url: str, concurrency: int, count: int) -> float:
        """The no-op on Celery's defaults; acknowledged on receipt, so drained is the queue
        empty (up to 4 messages a pool process, prefetched messages early, well under 1%)."""
        env = self.env(database_url, concurrency)
        queue = env["ACCOUNT_RESET_QUEUE"]
        messages = [raw_protocol2_message("noop", {}, queue) for _ in range(count)]
        with self.worker("bench.plain_noop_app", env, f"plain no-op c={concurrency}"):
            return drain_rate(redis.Redis.from_url(self.redis_url), queue, messages)

    def bulk(self, database_url: str, concurrency: int, count: int, *, listed: bool) -> float:
        """Seconds for one reset-session-keys run over an appid of `count` accounts; every
        account's key number must have moved on exactly once."""
        engine = sa.create_engine(database_url)
        appid, accountids = seed_appid(engine, count)
        env = self.env(database_url, concurrency)
        label = f"bulk {'listed' if listed else 'every'} {_backend(database_url)}"
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        with self.worker("worker", env, label):
            run = run_messages(appid, accountids if listed else None, env["ACCOUNT_RESET_QUEUE"])
            seconds = timed_run(
                client, env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"], run
            )
        counts = reset_counts(engine, appid)
        engine.dispose()
        if counts != {2: count}:
            raise RuntimeError(f"{label}: accounts by session key number {counts}")
        return seconds

    def mixed(
        self, database_url: str, concurrency: int, *, rate: float, count: int, passwords: int
    ) -> Latency:
        """reset-session-key on a sessions node at `rate`, beside a password burst on the main
        node (each node with `concurrency` pool processes)."""
        engine = sa.create_engine(database_url)
        hasher = Hasher(key=HASH_KEY, bcrypt_rounds=self.bcrypt_rounds)
        revoked = seed_accounts(engine, hasher, count, codes=False)
        resetting = seed_accounts(engine, hasher, passwords, codes=True)
        env = self.env(database_url, concurrency)
        queue = env["ACCOUNT_RESET_QUEUE"]
        env["ACCOUNT_RESET_SESSIONS_QUEUE"] = sessions = f"{queue}:sessions"
        # The revocations are a quarter of what one node drains: one pool process for them.
        sessions_env = env | {
            "ACCOUNT_RESET_NODE_ROLE": "sessions",
            "ACCOUNT_RESET_WORKER_CONCURRENCY": "1",
        }
        # As docs/operations.md advises for a password node beside a sessions node: bcrypt
        # niced, and kept off the first core, left to revocations, PostgreSQL and Redis.
        spare = sorted(os.sched_getaffinity(0))[1:] or [0]
        main_env = env | {
            "ACCOUNT_RESET_POOL_NICE": "10",
            "ACCOUNT_RESET_POOL_CPUS": ",".join(map(str, spare)),
        }
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        with (
            self.worker("worker", main_env, "mixed main"),
            self.worker("worker", sessions_env, "mixed sessions"),
        ):
            latency = latency_beside_a_burst(
                client, sessions_queue=sessions, stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
                revocations=[_message(sessions, a, password=False) for a in revoked], rate=rate,
                queue=queue, passwords=[_message(queue, a, password=True) for a in resetting],
            )  # fmt: skip
            client.delete(sessions, reserved_key(sessions), f"{sessions}:unacked")
        engine.dispose()
        return latency

    def footprint(self, database_url: str, concurrency: int, count: int) -> Footprint:
        """What one reset-session-key costs Redis, PostgreSQL and the worker's processes."""
        engine = sa.create_engine(database_url)
        hasher = Hasher(key=HASH_KEY, bcrypt_rounds=self.bcrypt_rounds)
        accounts = seed_accounts(engine, hasher, count, codes=False)
        engine.dispose()

        def drain(redis_url: str) -> WorkerProcess:
            env = self.env(database_url, concurrency) | {"ACCOUNT_RESET_BROKER_URL": redis_url}
            queue = env["ACCOUNT_RESET_QUEUE"]
            running = WorkerProcess(
                env, self.work / f"{queue}.log", app="worker", nodename=nodename("bench")
            )
            running.start(f"--concurrency={concurrency}", "--without-heartbeat")
            running.wait_until_ready()
            messages = [_message(queue, account, password=False) for account in accounts]
            drain_rate(redis.Redis.from_url(redis_url), queue, messages)
            return running

        return measured(database_url, drain, count)

    def commands(
        self, database_url: str, concurrency: int, count: int, *, password: bool = False,
        measure: Callable[[redis.Redis, dict[str, str], list[str]], Any] | None = None,
    ) -> Any:  # fmt: skip
        """Seed `count` accounts, run one command for each, check every one applied."""
        engine = sa.create_engine(database_url)
        hasher = Hasher(key=HASH_KEY, bcrypt_rounds=self.bcrypt_rounds)
        accounts = seed_accounts(engine, hasher, count, codes=password)
        env = self.env(database_url, concurrency)
        queue = env["ACCOUNT_RESET_QUEUE"]
        messages = [_message(queue, account, password=password) for account in accounts]
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        label = (
            f"{'password' if password else 'session-key'} {_backend(database_url)} c={concurrency}"
        )
        with self.worker("worker", env, label):
            result = (measure or _drain)(client, env, messages)
        done = applied(engine, accounts)
        engine.dispose()
        if done != count:
            raise RuntimeError(f"{label}: {done} of {count} commands applied")
        return result


def _drain(client: redis.Redis, env: dict[str, str], messages: list[str]) -> float:
    return drain_rate(client, env["ACCOUNT_RESET_QUEUE"], messages)


def _message(queue: str, account: Seeded, *, password: bool) -> str:
    if password:
        payload = {"username": account.username, "secret-code": account.code,
                   "new-password": f"bench-password-{account.code}"}  # fmt: skip
        return raw_protocol2_message("reset-account-password", payload, queue)
    payload = {"accountid": account.accountid, "requester_accountid": account.accountid}
    return raw_protocol2_message("reset-session-key", payload, queue)


def _backend(database_url: str) -> str:
    for prefix, name in (("postgresql", "PostgreSQL"), ("mariadb", "MariaDB"), ("mysql", "MySQL")):
        if database_url.startswith(prefix):
            return name
    return "SQLite"


def bcrypt_seconds(rounds: int, samples: int) -> float:
    hasher = Hasher(key=HASH_KEY, bcrypt_rounds=rounds)
    times = []
    for i in range(samples):
        started = time.perf_counter()
        hasher.password_hash(f"bench-password-{i}")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A migrated database (PostgreSQL, MariaDB) of the run's own, dropped afterwards."""
    with scratch_database(admin_url, prefix="account_reset_bench") as url:
        upgrade(url)
        yield url


@dataclass(frozen=True)
class Sizes:
    commands: int
    passwords_per_core: int
    latency_seconds: float
    bcrypt_rounds: int
    bcrypt_samples: int
    rounds: int
    # Accounts of the bulk runs: on PostgreSQL (the target's million), on SQLite and MariaDB.
    bulk_accounts: int
    bulk_other_accounts: int
    # Password resets per core in the burst beside the mixed-load revocations.
    burst_per_core: int


FULL = Sizes(commands=2000, passwords_per_core=30, latency_seconds=20.0, bcrypt_rounds=12,
             bcrypt_samples=7, rounds=3, bulk_accounts=1_000_000, bulk_other_accounts=100_000,
             burst_per_core=60)  # fmt: skip
SMOKE = Sizes(commands=40, passwords_per_core=2, latency_seconds=1.0, bcrypt_rounds=4,
              bcrypt_samples=3, rounds=1, bulk_accounts=2_500, bulk_other_accounts=1_500,
              burst_per_core=4)  # fmt: skip


def run(
    sizes: Sizes, redis_url: str, postgres_admin_url: str, mariadb_admin_url: str, work: Path,
    figure: Path,
) -> str:  # fmt: skip
    cores = cpu_count()
    levels = list(range(1, max(cores, 2) + 1))
    bench = Bench(redis_url=redis_url, work=work, bcrypt_rounds=sizes.bcrypt_rounds)
    sqlite_url = f"sqlite:///{work / 'bench.db'}"
    upgrade(sqlite_url)
    top = levels[-1]
    with postgres_database(postgres_admin_url) as pg:
        # Rounds alternate the baselines and the worker, so a noisy minute hits both; medians.
        rounds = [
            (
                bench.plain_noop(pg, top, sizes.commands),
                {c: bench.noop(pg, c, sizes.commands) for c in levels},
                {c: bench.commands(pg, c, sizes.commands) for c in levels},
                bench.commands(sqlite_url, top, sizes.commands),
            )
            for _ in range(sizes.rounds)
        ]
        plain = statistics.median(r[0] for r in rounds)
        noop = {c: statistics.median(r[1][c] for r in rounds) for c in levels}
        session = {c: statistics.median(r[2][c] for r in rounds) for c in levels}
        on_sqlite = statistics.median(r[3] for r in rounds)
        rate = session[top] / 4
        count = max(int(rate * sizes.latency_seconds), 20)
        latency: Latency = bench.commands(
            pg, top, count,
            measure=lambda client, env, messages: latency_at(
                client, env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"],
                messages, rate,
            ),
        )  # fmt: skip
        mixed = bench.mixed(pg, top, rate=rate, count=count, passwords=sizes.burst_per_core * top)
        # bcrypt timed just before each password round, on the same machine.
        password_rounds = [
            (
                bcrypt_seconds(sizes.bcrypt_rounds, sizes.bcrypt_samples),
                bench.commands(pg, top, sizes.passwords_per_core * top, password=True),
            )
            for _ in range(sizes.rounds)
        ]
        one_bcrypt = statistics.median(r[0] for r in password_rounds)
        passwords = statistics.median(r[1] for r in password_rounds)
        bulk = {
            "PostgreSQL, every account": (
                sizes.bulk_accounts,
                bench.bulk(pg, top, sizes.bulk_accounts, listed=False),
            ),
            "PostgreSQL, listed": (
                sizes.bulk_accounts,
                bench.bulk(pg, top, sizes.bulk_accounts, listed=True),
            ),
            "SQLite, every account": (
                sizes.bulk_other_accounts,
                bench.bulk(sqlite_url, top, sizes.bulk_other_accounts, listed=False),
            ),
        }
        footprint = bench.footprint(pg, top, sizes.commands)
        about = machine(redis.Redis.from_url(redis_url), pg, cores)
    with postgres_database(mariadb_admin_url) as mariadb:
        bulk["MariaDB, every account"] = (
            sizes.bulk_other_accounts,
            bench.bulk(mariadb, top, sizes.bulk_other_accounts, listed=False),
        )
    bcrypt_ceiling = top / one_bcrypt
    memory_label = f"session-key PostgreSQL c={top}"
    peak_mb, rss_sum_mb = (b / MB for b in bench.peak_memory[memory_label])
    rows = [
        Row(f"plain Celery no-op (Celery's defaults), concurrency {top}", f"{plain:.0f}/s"),
        *(Row(f"no-op with the worker's settings, concurrency {c}", f"{noop[c]:.0f}/s")
          for c in levels),
        Row(f"reset-session-key, PostgreSQL, concurrency {top}, against the plain no-op",
            f"{session[top]:.0f}/s", f"{plain:.0f}/s plain no-op", session[top] / plain,
            "≥ 0.5", session[top] / plain >= 0.5),
        *(Row(f"reset-session-key, PostgreSQL, concurrency {c}", f"{session[c]:.0f}/s",
              f"{noop[c]:.0f}/s same-settings no-op", session[c] / noop[c]) for c in levels),
        Row(f"reset-session-key, SQLite, concurrency {top}", f"{on_sqlite:.0f}/s",
            f"{noop[top]:.0f}/s same-settings no-op", on_sqlite / noop[top]),
        _latency_row(f"reset-session-key latency at {latency.rate:.0f}/s (¼ of throughput),"
                     " PostgreSQL", latency),
        _latency_row(f"reset-session-key latency at {mixed.rate:.0f}/s on its own queue and"
                     f" node, beside a burst of {sizes.burst_per_core * top} password resets",
                     mixed),
        Row(f"reset-account-password, PostgreSQL, concurrency {top}, bcrypt cost "
            f"{sizes.bcrypt_rounds}", f"{passwords:.2f}/s",
            f"{bcrypt_ceiling:.2f}/s ({top} cores / {one_bcrypt * 1000:.0f} ms per bcrypt)",
            passwords / bcrypt_ceiling, "≥ 0.95", passwords / bcrypt_ceiling >= 0.95),
        Row(f"peak memory, main + {top} pool processes ({memory_label}), PSS",
            f"{peak_mb:.0f} MB (RSS summed: {rss_sum_mb:.0f} MB)",
            target="≤ 150 MB", met=peak_mb <= 150),
        *(_bulk_row(name, accounts, seconds) for name, (accounts, seconds) in bulk.items()),
    ]  # fmt: skip
    plot(
        Figures(
            throughput=[
                ("plain Celery no-op", plain), ("no-op, worker's settings", noop[top]),
                ("reset-session-key, PostgreSQL", session[top]),
                ("reset-session-key, SQLite", on_sqlite),
            ],
            latencies=[("alone", list(latency.waits_ms)),
                       ("beside a password burst", list(mixed.waits_ms))],
            bulk=[(name, accounts / seconds) for name, (accounts, seconds) in bulk.items()],
        ),
        figure,
    )  # fmt: skip
    method = (
        f"- Medians of {sizes.rounds} alternating rounds; {sizes.commands} commands per "
        f"throughput run, each over its own accounts; baselines measured in the same rounds."
    )
    smoke = (
        "- Smoke run: sizes too small for the figures to mean anything.\n"
        if sizes.rounds == 1
        else ""
    )
    return f"{table(rows)}\n\n{smoke}{method}\n{about}\n\n{scale_model(footprint)}\n"


def scale_model(f: Footprint) -> str:
    """Per reset-session-key, what each part spends, and the rate at which each saturates
    alone: Redis's one thread, PostgreSQL's CPU per core, a worker core."""
    worker_ms = f.main_cpu_ms + f.pool_cpu_ms
    calls = ", ".join(f"{name} {n:.1f}" for name, n in f.redis_calls.items() if n >= 0.1)
    rows = [
        ("Redis (one thread)", f"{f.redis_total:.1f} commands ({calls}); {f.redis_cpu_ms:.2f} ms"
         " CPU", f"{1000 / f.redis_cpu_ms:,.0f}/s" if f.redis_cpu_ms else "-"),
        ("PostgreSQL", f"{f.postgres_transactions:.1f} transactions, {f.postgres_rows_written:.1f}"
         f" rows written, {f.postgres_cpu_ms:.2f} ms backend CPU",
         f"{1000 / f.postgres_cpu_ms:,.0f}/s a core" if f.postgres_cpu_ms else "-"),
        ("worker", f"{worker_ms:.2f} ms CPU (main process {f.main_cpu_ms:.2f}, pool"
         f" {f.pool_cpu_ms:.2f})", f"{1000 / worker_ms:,.0f}/s a core"),
    ]  # fmt: skip
    lines = [
        f"Footprint of one reset-session-key ({f.commands} drained on a Redis of the run's own"
        " and the run's database; Redis counts include the benchmark's own drain checks,"
        " LLEN and HLEN, and the worker's idle polling):",
        "",
        "| part | per command | saturates alone at |",
        "|---|---|---|",
        *(f"| {part} | {cost} | {limit} |" for part, cost, limit in rows),
    ]
    return "\n".join(lines)


def _latency_row(measure: str, latency: Latency) -> Row:
    return Row(
        measure,
        f"p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms"
        f" (max {latency.max_ms:.1f}, n={latency.count})",
        target="p99 ≤ 50 ms",
        met=latency.p99_ms <= 50,
    )


def _bulk_row(name: str, accounts: int, seconds: float) -> Row:
    target = name == "PostgreSQL, every account" and accounts >= 1_000_000
    return Row(
        f"bulk revocation, {accounts:,} accounts, {name}",
        f"{seconds:.1f} s ({accounts / seconds:,.0f} accounts/s)",
        target="≤ 60 s" if target else "",
        met=seconds <= 60 if target else None,
    )


@click.command()
@click.option("--smoke", is_flag=True, help="A small, quick run that checks the benchmark works.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here too.")
def main(smoke: bool, output: Path | None) -> None:
    redis_url = os.environ.get("ACCOUNT_RESET_TEST_REDIS_URL", DEFAULT_REDIS)
    postgres = os.environ.get("ACCOUNT_RESET_TEST_DATABASE_URL", DEFAULT_POSTGRES)
    mariadb = os.environ.get("ACCOUNT_RESET_TEST_MARIADB_URL", DEFAULT_MARIADB)
    with tempfile.TemporaryDirectory(prefix="account-reset-bench-") as work:
        # The smoke run draws its figure too, where it is thrown away.
        figure = FIGURE if output is not None else Path(work) / FIGURE.name
        result = run(SMOKE if smoke else FULL, redis_url, postgres, mariadb, Path(work), figure)
    click.echo(result)
    if output is not None:
        write_results(output, result)


RESULTS_START, RESULTS_END = "<!-- results: written by make bench -->", "<!-- /results -->"


def write_results(path: Path, result: str) -> None:
    """Replace the results between the markers, keeping the rest of the file (the analysis)."""
    block = f"{RESULTS_START}\n{result}{RESULTS_END}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{RESULTS_START}{RESULTS_END}\n"
    before, _, rest = text.partition(RESULTS_START)
    _, _, after = rest.partition(RESULTS_END)
    path.write_text(before + block + after)


if __name__ == "__main__":
    main()
