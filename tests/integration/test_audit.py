"""Audit consumers: `account-reset events tail`, alone and in a Redis consumer group, run as the
real console script against a real Redis stream written by the worker's own publisher.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
import redis

from schemas import CommandOutcome, ExceptionCode
from tests.support.ids import unique
from tests.support.probes import CLI
from worker.streams.publisher import EventStream

DEADLINE_S = 60.0


@pytest.fixture
def stream(redis_client: redis.Redis) -> Iterator[EventStream]:
    events = EventStream(client=redis_client, stream=unique("audit-test") + ":events", maxlen=None)
    yield events
    redis_client.delete(events.stream)


def tail(stream: EventStream, redis_url: str, *args: str) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    env |= {"ACCOUNT_RESET_BROKER_URL": redis_url, "ACCOUNT_RESET_EVENTS_STREAM": stream.stream}
    done = subprocess.run(
        [CLI, "events", "tail", "--json", "--idle-timeout", "1", *args],
        env=env, capture_output=True, text=True, check=True, timeout=DEADLINE_S,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def publish_mix(stream: EventStream) -> list[CommandOutcome]:
    outcomes = [
        CommandOutcome.success(
            command_id=unique("c"), command="reset-session-key", appid="a", accountid="acct_1"
        ),
        CommandOutcome.failure(
            command_id=unique("c"), command="reset-account-password",
            code=ExceptionCode.INVALID_RESET_CODE, appid="a", accountid="acct_2",
        ),
        CommandOutcome.failure(
            command_id=unique("c"), command="reset-account-password",
            code=ExceptionCode.TOO_MANY_ATTEMPTS, appid="a", accountid="acct_2",
        ),
        CommandOutcome.success(
            command_id=unique("c"), command="reset-account-password", appid="a", accountid="acct_3"
        ),
    ]  # fmt: skip
    for outcome in outcomes:
        stream.publish(outcome)
    return outcomes


def ids(events: list[dict[str, object]]) -> list[object]:
    return [event["command_id"] for event in events]


def test_tail_filters_by_status_code_and_account(stream: EventStream, redis_url: str) -> None:
    sent = publish_mix(stream)

    assert ids(tail(stream, redis_url, "--from-start")) == [o.command_id for o in sent]
    assert ids(tail(stream, redis_url, "--from-start", "--status", "failure")) == [
        sent[1].command_id, sent[2].command_id,
    ]  # fmt: skip
    assert ids(tail(stream, redis_url, "--from-start", "--code", "too-many-attempts")) == [
        sent[2].command_id
    ]
    assert ids(tail(stream, redis_url, "--from-start", "--accountid", "acct_3")) == [
        sent[3].command_id
    ]
    assert ids(tail(stream, redis_url, "--from-start", "--count", "2")) == ids(
        [json.loads(o.model_dump_json()) for o in sent[:2]]
    )


def test_a_group_takes_over_what_a_dead_consumer_left_and_acknowledges_it(
    stream: EventStream, redis_url: str, redis_client: redis.Redis
) -> None:
    sent = publish_mix(stream)
    group = unique("auditors")
    redis_client.xgroup_create(stream.stream, group, id="0")
    # A consumer reads two entries and dies before acknowledging them.
    redis_client.xreadgroup(group, "dead-consumer", {stream.stream: ">"}, count=2)

    read = tail(stream, redis_url, "--group", group, "--consumer", "alive", "--claim-idle", "0")
    pending = redis_client.xpending(stream.stream, group)["pending"]
    again = tail(stream, redis_url, "--group", group, "--consumer", "alive", "--claim-idle", "0")

    print(f"\nread by the live consumer {len(read)} (2 taken over), then pending {pending}")
    assert sorted(map(str, ids(read))) == sorted(o.command_id for o in sent)
    assert pending == 0
    assert again == []


def test_a_group_member_rereads_its_own_unacknowledged_entries_first(
    stream: EventStream, redis_url: str, redis_client: redis.Redis
) -> None:
    sent = publish_mix(stream)
    group = unique("auditors")
    redis_client.xgroup_create(stream.stream, group, id="0")
    redis_client.xreadgroup(group, "restarted", {stream.stream: ">"}, count=3)

    read = tail(stream, redis_url, "--group", group, "--consumer", "restarted")

    assert ids(read) == [o.command_id for o in sent]
    assert redis_client.xpending(stream.stream, group)["pending"] == 0


def test_tail_prints_a_table_by_default(stream: EventStream, redis_url: str) -> None:
    sent = publish_mix(stream)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    env |= {"ACCOUNT_RESET_BROKER_URL": redis_url, "ACCOUNT_RESET_EVENTS_STREAM": stream.stream}
    done = subprocess.run(
        [CLI, "events", "tail", "--from-start", "--idle-timeout", "1"],
        env=env, capture_output=True, text=True, check=True, timeout=DEADLINE_S,
    )  # fmt: skip
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["occurred_at", "status", "code", "command", "accountid", "command_id"]
    assert [row.split()[1:3] for row in rows] == [
        ["success", "-"], ["failure", "invalid-reset-code"], ["failure", "too-many-attempts"],
        ["success", "-"],
    ]  # fmt: skip
    assert [row.split()[-1] for row in rows] == [o.command_id for o in sent]
    assert done.stderr.strip().endswith("4 events")
