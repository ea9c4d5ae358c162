"""Real services for the tests: Redis, SQLite and PostgreSQL, and real worker processes.

`ACCOUNT_RESET_TEST_REDIS_URL` names a Redis to use (else an embedded one is started);
`ACCOUNT_RESET_TEST_DATABASE_URL` names a PostgreSQL and `ACCOUNT_RESET_TEST_MARIADB_URL` a
MariaDB (or MySQL) to run the database tests on as well. With
`ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1` (CI), a missing one fails instead of skipping.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from hypothesis import settings

from schemas import CommandLimits
from tasks.deps import RuleDeps
from tasks.pipeline import CommandProcessor
from tests.support import (
    SESSION_KEYS,
    TEST_BCRYPT_ROUNDS,
    TEST_HASH_KEY,
    WorkerProcess,
    mariadb_database,
    postgres_database,
    unique,
    worker_env,
)
from worker.db.engine import create_db_engine, session_factory
from worker.db.migrate import upgrade
from worker.db.models import Account, ResetCode
from worker.dev.embedded_redis import EmbeddedRedis, free_port
from worker.dev.seeding import SeededAccount, create_account, create_reset_code
from worker.security.attempts import CodeAttempts, counts_naming_key
from worker.security.fingerprints import RequestFingerprints
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.cache import DashboardCache
from worker.streams.publisher import EventStream

# CI runs the same examples every time (HYPOTHESIS_PROFILE=ci); a developer's run explores.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REQUIRE_SERVICES = os.environ.get("ACCOUNT_RESET_TEST_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("ACCOUNT_RESET_TEST_DATABASE_URL")
MARIADB_URL = os.environ.get("ACCOUNT_RESET_TEST_MARIADB_URL")
BACKENDS = ["sqlite", "postgresql", "mariadb"]


def _service_url_or_skip(url: str | None, variable: str, what: str) -> str:
    if url:
        return url
    if REQUIRE_SERVICES:
        pytest.fail(f"{variable} is required when services are required")
    pytest.skip(f"set {variable} to run on {what}")


def _postgres_url_or_skip() -> str:
    return _service_url_or_skip(POSTGRES_URL, "ACCOUNT_RESET_TEST_DATABASE_URL", "PostgreSQL")


def _mariadb_url_or_skip() -> str:
    return _service_url_or_skip(MARIADB_URL, "ACCOUNT_RESET_TEST_MARIADB_URL", "MariaDB")


@contextmanager
def backend_database(backend: str, directory: Path) -> Iterator[str]:
    """An empty database of its own on `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / unique('db')}.db"
    elif backend == "postgresql":
        with postgres_database(_postgres_url_or_skip()) as url:
            yield url
    else:
        with mariadb_database(_mariadb_url_or_skip()) as url:
            yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("ACCOUNT_RESET_TEST_REDIS_URL")
    if given:
        yield given
        return
    embedded = EmbeddedRedis(port=free_port(), directory=Path(tempfile.mkdtemp())).start()
    yield embedded.url
    embedded.stop()


@pytest.fixture(scope="session", autouse=True)
def _session_keys_removed(redis_url: str) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(redis_url)
    keys = sorted(SESSION_KEYS)
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database per backend, shared by a session; tests use unique accounts."""
    with backend_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (for migration tests), on the backend in `request.param`."""
    with backend_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def hasher() -> Hasher:
    return Hasher(key=TEST_HASH_KEY, bcrypt_rounds=TEST_BCRYPT_ROUNDS)


@pytest.fixture
def events_stream(redis_client: redis.Redis) -> Iterator[EventStream]:
    stream = EventStream(client=redis_client, stream=unique("test-events"), maxlen=None)
    yield stream
    redis_client.delete(stream.stream)


@pytest.fixture
def processor(
    database_url: str, hasher: Hasher, events_stream: EventStream, redis_client: redis.Redis
) -> Iterator[CommandProcessor]:
    """The worker's command path in this process, on a real database and a real Redis."""
    engine = create_db_engine(database_url)
    processor = in_process_processor(engine, hasher, events_stream, redis_client)
    yield processor
    engine.dispose()
    # The attempt counts and delivery markers the test made (a prefix of its own).
    counts = list(redis_client.scan_iter(f"{processor.deps.attempts.key_prefix}:*", count=1000))
    if counts:
        redis_client.delete(*counts)


def in_process_processor(
    engine: sa.Engine,
    hasher: Hasher,
    events: EventStream,
    cache: redis.Redis,
    *,
    sealed: SealedFields | None = None,
    code_ttl: timedelta | None = None,
) -> CommandProcessor:
    attempts = CodeAttempts(
        client=cache,
        key_prefix=unique("code-attempts"),
        max_attempts=5,
        window_s=900,
        naming_key=counts_naming_key(TEST_HASH_KEY),
    )
    return CommandProcessor(
        sessions=session_factory(engine),
        deps=RuleDeps(hasher=hasher, attempts=attempts, code_ttl=code_ttl),
        sealed=sealed or SealedFields(keys=None, required=False, max_field_length=1024),
        events=events,
        dashboard=DashboardBookkeeping(cache=DashboardCache(cache)),
        limits=CommandLimits(),
        default_appid="test-app",
        fingerprints=RequestFingerprints.keyed(TEST_HASH_KEY),
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database of its own, for what only PostgreSQL can show."""
    with postgres_database(_postgres_url_or_skip()) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session", params=["postgresql", "mariadb"])
def server_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database on a server with row locks and several writers at once (PostgreSQL,
    MariaDB's InnoDB), for races and several nodes."""
    with backend_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def running_worker(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real worker process per database backend, with its own queue and stream."""
    env = worker_env(redis_url=redis_url, database_url=database_url)
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = WorkerProcess(env=env, log_path=log_path).start()
    yield worker
    worker.stop()
    client = redis.Redis.from_url(redis_url)
    client.delete(env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"])
    client.close()


class Seeder:
    """Creates accounts and reset codes the dashboard's way, each committed at once."""

    def __init__(self, database_url: str, hasher: Hasher) -> None:
        self.engine = create_db_engine(database_url)
        self.sessions = session_factory(self.engine)
        self.hasher = hasher

    def account(
        self, *, appid: str = "test-app", password: str = "old-password", deleted: bool = False
    ) -> SeededAccount:
        with self.sessions.begin() as session:
            return create_account(
                session,
                self.hasher,
                appid=appid,
                username=unique("user"),
                password=password,
                deleted=deleted,
            )

    def code(
        self, account: SeededAccount, code: str | None = None, *, age: timedelta | None = None
    ) -> str:
        code = code or unique("code")
        created_at = None if age is None else datetime.now(UTC) - age
        with self.sessions.begin() as session:
            create_reset_code(session, self.hasher, account, code=code, created_at=created_at)
        return code

    def load(self, accountid: str) -> Account:
        with self.sessions() as session:
            account = session.get(Account, accountid)
            assert account is not None
            return account

    def codes_of(self, accountid: str) -> int:
        with self.sessions() as session:
            query = sa.select(sa.func.count()).where(ResetCode.accountid == accountid)
            return int(session.scalar(query) or 0)


@pytest.fixture
def seeder(database_url: str, hasher: Hasher) -> Iterator[Seeder]:
    seeder = Seeder(database_url, hasher)
    yield seeder
    seeder.engine.dispose()
