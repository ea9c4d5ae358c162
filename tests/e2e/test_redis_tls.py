"""TLS means TLS (issue 13, finding 2): `rediss://` always encrypts and verifies the certificate,
for the broker and every other Redis client, with a private TLS-only redis-server."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from client import AccountResetClient, ClientSettings
from client.raw_message import task_id_of
from client.redis_clients import RedisOptions, broker_connection, redis_client
from tests.support.databases import migrated_sqlite
from tests.support.keys import TEST_HASH_KEY
from tests.support.messages import own_sessions_reset
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.tls_redis import Certificates, TlsRedis, make_certificates
from tests.support.workers import WorkerProcess, worker_env
from worker.app import celery_config
from worker.security.hashing import Hasher
from worker.settings import Settings

DEADLINE_S = 60.0
# What Celery's consumer logs while it cannot reach the broker (it retries, never consumes).
CANNOT_CONNECT = r"consumer: Cannot connect to [^\n]*"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis(tmp_path: Path, certificates: Certificates) -> Iterator[TlsRedis]:
    with TlsRedis(tmp_path, certificates) as server:
        yield server


def test_a_rediss_url_without_options_is_verified_tls_for_the_broker_too() -> None:
    """Finding 2: `rediss://host:port/0` with no query string reached kombu under the worker's
    transport class as plain Redis. Now the broker is given verified TLS explicitly."""
    settings = Settings(
        broker_url="rediss://127.0.0.1:6380/0",
        redis_ca_file=Path("/etc/ca.pem"),
        hash_key=TEST_HASH_KEY,
    )
    config = celery_config(settings)
    assert config["broker_use_ssl"] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert config["broker_url"] == "rediss://127.0.0.1:6380/0"
    # A handshake with a server that never answers it ends (kombu sets no timeout of its own).
    assert config["broker_transport_options"]["socket_timeout"] == 10.0
    # The URL's own CA wins over the setting; its options leave the URL for kombu's ssl dict.
    given = broker_connection(
        "rediss://127.0.0.1:6380/0?ssl_ca_certs=/other.pem", RedisOptions(ca_file=Path("/x"))
    )
    assert given.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/other.pem"}
    assert given.url == "rediss://127.0.0.1:6380/0"


def test_every_client_verifies_the_servers_certificate(
    tls_redis: TlsRedis, certificates: Certificates
) -> None:
    """The right CA (from the setting) connects; a wrong CA and no CA (the system's) refuse."""
    right = redis_client(tls_redis.url, RedisOptions(ca_file=certificates.ca_file))
    assert right.ping()
    right.close()
    for options in (RedisOptions(ca_file=certificates.wrong_ca_file), RedisOptions()):
        refused = redis_client(tls_redis.url, options, socket_connect_timeout=2)
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            refused.ping()
        refused.close()


def test_rediss_against_a_plaintext_redis_refuses_every_client() -> None:
    with PrivateRedis() as plain:
        client = redis_client(plain.url.replace("redis://", "rediss://"), socket_timeout=2)
        # Redis waits for the end of a command that the TLS handshake never sends.
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            client.ping()
        client.close()


def _worker(tmp_path: Path, database_url: str, url: str, ca_file: Path) -> WorkerProcess:
    env = worker_env(
        redis_url=url, database_url=database_url, ACCOUNT_RESET_REDIS_CA_FILE=str(ca_file)
    )
    return WorkerProcess(env=env, log_path=tmp_path / "worker.log")


def test_a_rediss_worker_applies_commands_over_tls(
    tmp_path: Path, tls_redis: TlsRedis, certificates: Certificates, seeder: Seeder
) -> None:
    """Finding 2: broker, events, attempt counts and cache all on a TLS-only Redis (its plaintext
    port is off), with `rediss://` and no query string: 20 of 20 commands applied."""
    worker = _worker(tmp_path, seeder_url(seeder), tls_redis.url, certificates.ca_file).start()
    env = worker.env
    settings = ClientSettings(
        broker_url=tls_redis.url,
        redis_ca_file=certificates.ca_file,
        queue=env["ACCOUNT_RESET_QUEUE"],
        events_stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
        sealing_public_key=env["ACCOUNT_RESET_SEALING_PUBLIC_KEY"],
    )
    accounts = [seeder.account() for _ in range(20)]
    try:
        with AccountResetClient(settings) as client:
            sent = [client.reset_session_key(account.accountid) for account in accounts]
            outcomes = client.wait_all(sent, timeout_s=DEADLINE_S)
    finally:
        worker.stop()
    assert {outcome.status for outcome in outcomes.values()} == {"success"}
    assert all((seeder.load(a.accountid).session_key_number or 0) == 2 for a in accounts)
    print(f"\nTLS: sent 20, applied {len(outcomes)} over rediss:// (plaintext port off)")


@pytest.mark.parametrize("server", ["plaintext", "wrong-ca"])
def test_a_rediss_worker_never_consumes_unverified(
    server: str, tmp_path: Path, certificates: Certificates, hasher: Hasher
) -> None:
    """Finding 2: against a plaintext Redis, a `rediss://` worker consumed a command in plaintext;
    now it refuses (and keeps retrying), as it does against a certificate of another CA. (Redis
    alone is at stake: one SQLite database of the test's own.)"""
    database_url = migrated_sqlite(tmp_path)
    seeder = Seeder(database_url, hasher)
    with PrivateRedis() as plain, TlsRedis(tmp_path, certificates) as tls:
        url = plain.url.replace("redis://", "rediss://") if server == "plaintext" else tls.url
        ca_file = certificates.ca_file if server == "plaintext" else certificates.wrong_ca_file
        worker = _worker(tmp_path, seeder_url(seeder), url, ca_file)
        queue = worker.env["ACCOUNT_RESET_QUEUE"]
        account = seeder.account()
        message = own_sessions_reset(account.accountid, queue)
        holder = redis.Redis.from_url(plain.url) if server == "plaintext" else tls.admin()
        holder.rpush(queue, message)
        worker.start()
        try:
            said = worker.wait_for_log(CANNOT_CONNECT, timeout_s=DEADLINE_S)
            # Refused (and retrying): the command is where it was, unapplied.
            assert holder.lrange(queue, 0, -1) == [message.encode()]
        finally:
            worker.stop()
        holder.close()
    assert (seeder.load(account.accountid).session_key_number or 0) == 1
    assert task_id_of(message) not in worker.log()
    seeder.engine.dispose()
    print(f"\nTLS refused ({server}): {said[:160]}")


def seeder_url(seeder: Seeder) -> str:
    return seeder.engine.url.render_as_string(hide_password=False)
