"""What one reset-session-key costs each part, for the scale model in BENCHMARKS.md.

N commands drained through a real worker on a Redis of the run's own (so its command counts and
CPU are the worker's alone) and the run's PostgreSQL database: Redis commands and Redis CPU per
command, PostgreSQL transactions, rows written, WAL bytes and backend CPU per command, and the
worker's CPU per command, main process and pool apart.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from worker.dev.embedded_redis import EmbeddedRedis
from worker.dev.processes import WorkerProcess, free_port

TICKS = os.sysconf("SC_CLK_TCK")
STATS_INTERVAL_S = 1.1
SETTLE_DEADLINE_S = 10.0


@dataclass(frozen=True)
class Footprint:
    commands: int
    redis_calls: dict[str, float]  # per command, by Redis command name
    redis_cpu_ms: float
    postgres_transactions: float
    postgres_rows_written: float
    postgres_wal_bytes: float
    postgres_cpu_ms: float
    main_cpu_ms: float
    pool_cpu_ms: float

    @property
    def redis_total(self) -> float:
        return sum(self.redis_calls.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def measured(
    database_url: str,
    drain: Callable[[str], WorkerProcess],
    count: int,
) -> Footprint:
    """`drain(redis_url)` starts a worker on that Redis, drains `count` commands and returns
    the worker, still running (the figures are read before it stops)."""
    with tempfile.TemporaryDirectory(prefix="account-reset-footprint-") as folder:
        server = EmbeddedRedis(port=free_port(), directory=Path(folder)).start()
        try:
            return _measure(database_url, server.url, drain, count)
        finally:
            server.stop()


def _measure(
    database_url: str, redis_url: str, drain: Callable[[str], WorkerProcess], count: int
) -> Footprint:
    client = redis.Redis.from_url(redis_url)
    engine = sa.create_engine(database_url)
    database = sa.make_url(database_url).database
    before = _postgres(engine, database), _redis(client)
    worker = drain(redis_url)  # started, drained, not yet stopped
    try:
        main, *pool = worker.pids()
        after = _settled(engine, database), _redis(client)
        main_cpu, pool_cpu = cpu_seconds(main), sum(cpu_seconds(pid) for pid in pool)
    finally:
        worker.stop()
        engine.dispose()
    (pg0, pids0), (calls0, rcpu0) = before
    (pg1, pids1), (calls1, rcpu1) = after
    # The worker's connections' backends, read while they were alive.
    backend_cpu = sum(pids1.values()) - sum(pids0.get(pid, 0.0) for pid in pids1)
    per = 1 / count
    return Footprint(
        commands=count,
        redis_calls={
            name: (calls1.get(name, 0) - calls0.get(name, 0)) * per
            for name in sorted(calls1)
            if calls1.get(name, 0) - calls0.get(name, 0) > 0
        },
        redis_cpu_ms=(rcpu1 - rcpu0) * 1000 * per,
        postgres_transactions=(pg1["xact_commit"] - pg0["xact_commit"]) * per,
        postgres_rows_written=(pg1["rows"] - pg0["rows"]) * per,
        postgres_wal_bytes=(pg1["wal"] - pg0["wal"]) * per,
        postgres_cpu_ms=backend_cpu * 1000 * per,
        main_cpu_ms=main_cpu * 1000 * per,
        pool_cpu_ms=pool_cpu * 1000 * per,
    )


def _settled(engine: sa.Engine, database: str | None) -> tuple[dict[str, int], dict[int, float]]:
    """The database's statistics once its backends have reported (PostgreSQL flushes them at
    most once a second): two reads a report interval apart that agree, within 10 s."""
    last = _postgres(engine, database)
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline:
        time.sleep(STATS_INTERVAL_S)  # the statistics' own flush interval, not a sync
        now = _postgres(engine, database)
        if now[0] == last[0]:
            return now
        last = now
    return last


def _redis(client: redis.Redis) -> tuple[dict[str, int], float]:
    stats: dict[str, Any] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    cpu: dict[str, Any] = client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _postgres(engine: sa.Engine, database: str | None) -> tuple[dict[str, int], dict[int, float]]:
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted,"
                " pg_current_wal_lsn() - '0/0'::pg_lsn FROM pg_stat_database"
                " WHERE datname = :name"
            ),
            {"name": database},
        ).one()
        pids = connection.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": database},
        ).scalars()
        cpus = {int(pid): cpu_seconds(int(pid)) for pid in pids}
    return {"xact_commit": int(row[0]), "rows": int(row[1]), "wal": int(row[2])}, cpus
