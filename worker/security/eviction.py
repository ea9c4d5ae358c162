"""The attempt counts must not vanish: a Redis that may evict them is refused when a worker starts.

With `maxmemory` set and any policy but `noeviction`, a Redis that runs out of memory removes
keys: `volatile-*` the ones with a TTL, which every attempt count has, `allkeys-*` any. A flood
of queue entries could then wipe the counts and let guessing resume inside the window. With
`noeviction` a full Redis refuses writes instead: commands fail and are retried, and no guess
is let through unchecked. `account-reset health` reports the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from client.redis_clients import RedisOptions, redis_client

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
# Named by its settings, never by its URL, which may hold a password.
COUNTS_REDIS = "the Redis holding the attempt counts (ACCOUNT_RESET_EVENTS_URL, else _BROKER_URL)"
CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EvictionPolicy:
    maxmemory_bytes: int
    policy: str

    @property
    def may_evict(self) -> bool:
        return self.maxmemory_bytes > 0 and self.policy != SAFE_POLICY


class EvictingRedis(Exception):
    """The counts' Redis may evict them, or would not say whether it may."""


def eviction_policy(client: redis.Redis) -> EvictionPolicy:
    """`maxmemory` and `maxmemory_policy` from INFO memory (the worker's ACL user has +info)."""
    try:
        info: dict[str, Any] = client.info("memory")
    except redis.ResponseError as error:  # NoPermissionError included
        raise EvictingRedis(
            f"cannot read INFO memory of {COUNTS_REDIS} ({type(error).__name__}), so cannot tell"
            " whether it may evict them: give the worker's Redis user +info"
            " (`account-reset redis-acl`)"
        ) from None
    # A Redis that does not say which policy it has is taken to have one that evicts.
    return EvictionPolicy(
        maxmemory_bytes=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "unknown")),
    )


def check_eviction(client: redis.Redis) -> EvictionPolicy:
    """The policy, or `EvictingRedis` with one line saying what to change."""
    policy = eviction_policy(client)
    if policy.may_evict:
        raise EvictingRedis(
            f"{COUNTS_REDIS} has maxmemory {policy.maxmemory_bytes} bytes with maxmemory-policy"
            f" {policy.policy}, so it may evict the counts and let guessing resume: set"
            f" maxmemory-policy {SAFE_POLICY} there (or maxmemory 0)"
        )
    return policy


def counts_client(url: str, options: RedisOptions | None = None) -> redis.Redis:
    """A client for the check alone, which never waits long on one reply."""
    return redis_client(
        url, options, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )


def refuse_an_evicting_redis(url: str, options: RedisOptions | None = None) -> None:
    """At a worker's start: exit with one line if the counts could vanish.

    A Redis out of reach is not waited for: the worker starts anyway, since committed outcomes
    wait in the outbox for that Redis, and a command that needs the counts is retried until it
    is back (an attempt is never checked uncounted). `account-reset health` checks the policy
    on every probe, so an evicting Redis is still reported once it is reachable.
    """
    client = counts_client(url, options)
    try:
        check_eviction(client)
    except EvictingRedis as refused:
        raise SystemExit(f"refusing to start: {refused}") from None
    except (redis.ConnectionError, redis.TimeoutError) as error:
        log.warning(
            "%s not reachable (%s): its eviction policy is checked by `account-reset health`",
            COUNTS_REDIS,
            type(error).__name__,
        )
    finally:
        client.close()


def eviction_status(url: str | None, options: RedisOptions | None = None) -> tuple[bool, str]:
    """For `account-reset health`: whether the counts are safe from eviction, and one line."""
    if url is None:
        return True, "attempt counts on the embedded Redis (development)"
    client = counts_client(url, options)
    try:
        policy = check_eviction(client)
    except EvictingRedis as refused:
        return False, str(refused)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        # A Redis blip is no reason to restart a worker; the start check stays strict.
        return True, f"eviction policy of {COUNTS_REDIS} not read ({type(error).__name__})"
    finally:
        client.close()
    return True, (
        f"attempt counts cannot be evicted (maxmemory {policy.maxmemory_bytes},"
        f" maxmemory-policy {policy.policy})"
    )
