"""Every Redis client from one URL (client/redis_clients.py): Sentinel URLs and settings."""

from __future__ import annotations

import ssl

import pytest
import redis
from pydantic import ValidationError
from redis.sentinel import SentinelConnectionPool

from client import ClientSettings
from client.redis_clients import (
    RedisOptions,
    broker_connection,
    parse_sentinel_url,
    redis_client,
)
from tests.support.keys import TEST_HASH_KEY
from worker.app import celery_config
from worker.broker.task import is_transient
from worker.settings import Settings

SENTINELS = (
    "sentinel://:master-secret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2"
)


def test_kombus_sentinel_url_form_is_read_whole() -> None:
    target = parse_sentinel_url(SENTINELS)
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert (target.password, target.db) == ("master-secret", 2)
    assert "master-secret" not in repr(target)


def test_finding_1_a_sentinel_url_needs_the_master_name_and_says_so() -> None:
    """Finding 1: there was no setting for the master's name; a sentinel:// URL without one is
    now a one-line error naming the variable, for the worker and for producers."""
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_SENTINEL_MASTER"):
        Settings(broker_url=SENTINELS, hash_key=TEST_HASH_KEY)
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_SENTINEL_MASTER"):
        ClientSettings(broker_url=SENTINELS)
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_CACHE_URL must be a redis"):
        Settings(broker_url="redis://x/0", cache_url="http://x", hash_key=TEST_HASH_KEY)


def test_finding_1_every_client_of_a_sentinel_url_follows_the_master() -> None:
    """Finding 1: `redis.Redis.from_url` has no sentinel:// (the worker exited at start). Now a
    client of that URL is Sentinel's `master_for`, asking the sentinels for the master."""
    options = RedisOptions(sentinel_master="mymaster", sentinel_password="sentinels-secret")
    client = redis_client(SENTINELS, options)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "master-secret"
    assert pool.connection_kwargs["db"] == 2
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["password"] == "sentinels-secret"
    client.close()


def test_finding_1_the_broker_takes_the_workers_sentinel_transport() -> None:
    """The worker's transport (BLMOVE, entry checks) on Sentinel, with every sentinel in its
    options and one URL for kombu (whose failover URLs would drop the transport class)."""
    settings = Settings(
        broker_url=SENTINELS,
        sentinel_master="mymaster",
        sentinel_password="sentinels-secret",
        hash_key=TEST_HASH_KEY,
    )
    config = celery_config(settings)
    assert config["broker_transport"] == "worker.broker.transport:SentinelTransport"
    assert config["broker_url"] == "sentinel://:master-secret@10.0.0.1:26379/2"
    options = config["broker_transport_options"]
    assert options["master_name"] == "mymaster"
    assert options["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert options["sentinel_kwargs"] == {"password": "sentinels-secret"}
    assert options["priority_steps"] == [0]  # one key per queue: BLMOVE applies
    assert config["broker_use_ssl"] is False
    # Producers use kombu's own Sentinel transport with every sentinel as a failover URL.
    producer = broker_connection(SENTINELS, RedisOptions(sentinel_master="mymaster"))
    assert producer.kombu_url.count(";") == 2
    assert all(part.endswith("/2") for part in producer.kombu_url.split(";"))


def test_sentinel_tls_reaches_sentinels_and_master_verified() -> None:
    options = RedisOptions(sentinel_master="mymaster", sentinel_tls=True)
    config = broker_connection(SENTINELS, options)
    assert config.ssl is not None
    assert config.ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert config.transport_options["sentinel_kwargs"]["ssl"] is True
    client = redis_client(SENTINELS, options)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs[
        "ssl_cert_reqs"
    ] == ("required")
    client.close()


def test_a_demoted_master_is_a_transient_fault() -> None:
    """Finding 1: `ReadOnlyError` (a worker writing to a demoted master) ended the command."""
    assert is_transient(
        redis.ReadOnlyError("READONLY You can't write against a read only replica.")
    )
