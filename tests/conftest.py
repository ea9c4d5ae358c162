"""The tests' fixtures: Redis, SQLite, PostgreSQL and MariaDB, and real worker processes.

The servers are the ones `ACCOUNT_RESET_TEST_*` variables name, else the machine's usual ones,
else private ones started for the session (tests/support/servers.py). Helpers live in the
tests.support package.

Each test is marked with its ring, the directory it lives in (`pytest -m unit` runs the unit ring):
unit (no services), integration (real databases and Redis), e2e (real worker processes), faults.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from tasks.pipeline import CommandProcessor
from tests.support.commands import in_process_processor
from tests.support.databases import BACKENDS, backend_database
from tests.support.ids import unique
from tests.support.keys import TEST_BCRYPT_ROUNDS, TEST_HASH_KEY
from tests.support.seeding import Seeder
from tests.support.servers import SERVERS
from tests.support.workers import (
    SESSION_ENVS,
    SESSION_KEYS,
    WorkerProcess,
    remove_health_files,
    worker_env,
)
from worker.db.engine import create_db_engine
from worker.db.migrate import upgrade
from worker.security.hashing import Hasher
from worker.streams.publisher import EventStream

# CI runs the same examples every time (HYPOTHESIS_PROFILE=ci); a developer's run explores.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

RINGS = ("unit", "integration", "e2e", "faults")
# A test that waits past its ring's bound has hung (issue 16, finding 12): the slowest took 22 s
# on a busy 2-core machine (unit ring: 2 s in all). Fault tests wait through outages on purpose.
RING_TIMEOUTS_S = {"unit": 60, "integration": 120, "e2e": 120, "faults": 300}
TESTS_DIR = Path(__file__).parent


def pytest_sessionfinish() -> None:
    """The private servers the session started (none where the machine runs its own)."""
    SERVERS.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its ring (the first directory under tests/ it lives in), and give it
    its ring's timeout unless it has one of its own."""
    for item in items:
        ring = item.path.relative_to(TESTS_DIR).parts[0]
        if ring in RINGS:
            item.add_marker(ring)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(RING_TIMEOUTS_S[ring]))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The tests' Redis; when the session ends, every key a worker env of it named is removed
    (tests delete what they look at; this catches what a failed or killed run left)."""
    url = SERVERS.redis()
    yield url
    client = redis.Redis.from_url(url)
    keys = sorted(SESSION_KEYS)
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _children_temporary_folder() -> Iterator[Path]:
    """The processes a session starts (workers, the CLI) make their temporary files in a folder
    of the session's, removed when it ends: a worker killed with SIGKILL never removes its pool's
    `pymp-*` folder (a CI run left 94 in /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="account-reset-tests-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))  # the children's; this process keeps its own
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _no_health_notes_left() -> Iterator[None]:
    """When the session ends, the health notes of every worker env it made (a worker killed
    by a test, or a test that failed before its clean-up, leaves its node's note)."""
    yield
    for env in SESSION_ENVS:
        remove_health_files(env)


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


@pytest.fixture(params=BACKENDS)
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test's own, per backend: for tests that read every row of a
    table (the outbox relay), which rows left by other tests of the session would disturb."""
    with backend_database(request.param, tmp_path) as url:
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


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database of its own, for what only PostgreSQL can show."""
    with backend_database("postgresql", tmp_path_factory.mktemp("db")) as url:
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
    worker.remove_keys(redis_url)


@pytest.fixture
def seeder(database_url: str, hasher: Hasher) -> Iterator[Seeder]:
    seeder = Seeder(database_url, hasher)
    yield seeder
    seeder.engine.dispose()
