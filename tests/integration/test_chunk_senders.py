"""One sender for each message of an every_account run, on a real Redis
(worker/broker/chunk_senders.py; issue 15, finding 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.ids import unique
from worker import keys
from worker.broker.chunk_senders import ChunkSenders

TTL_S = 3600


@pytest.fixture
def senders(redis_client: redis.Redis) -> Iterator[ChunkSenders]:
    queue = unique("senders-queue")
    yield ChunkSenders(client=redis_client, queue=queue, ttl_s=TTL_S)
    for key in redis_client.scan_iter(match=keys.chunk_sender(queue, "*")):
        redis_client.delete(key)


def test_the_first_delivery_to_claim_a_message_alone_may_send_it(senders: ChunkSenders) -> None:
    """Two copies of #3 (task ids a and b): a claims #4; b may not send it; a, redelivered or
    retried under its task id, still may, until it has sent it."""
    assert senders.may_send("run#4", "task-a")
    assert not senders.may_send("run#4", "task-b")
    assert senders.may_send("run#4", "task-a")
    senders.sent("run#4", "task-a")
    assert not senders.may_send("run#4", "task-a")
    assert not senders.may_send("run#4", "task-b")
    assert senders.may_send("run#5", "task-b")


def test_a_claim_lives_as_long_as_the_outcomes_are_kept(
    senders: ChunkSenders, redis_client: redis.Redis
) -> None:
    senders.may_send("run#1", "task-a")
    senders.sent("run#1", "task-a")
    ttl = redis_client.ttl(keys.chunk_sender(senders.queue, "run#1"))
    assert 0 < ttl <= TTL_S
