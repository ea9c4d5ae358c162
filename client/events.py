"""Reading result events back from the Redis stream: one outcome per entry, in field `event`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import redis

from schemas import CommandOutcome
from schemas.events import EVENT_FIELD


def event_json(fields: Mapping[Any, Any]) -> str:
    """The JSON text of the event in one stream entry's fields."""
    raw = fields.get(EVENT_FIELD.encode(), fields.get(EVENT_FIELD))
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, str):
        return raw
    raise ValueError("stream entry has no event field")


def read_outcome(fields: Mapping[Any, Any]) -> CommandOutcome:
    """The outcome held by one stream entry, as read back with XRANGE or XREAD."""
    return CommandOutcome.model_validate_json(event_json(fields))


def stream_outcomes(client: redis.Redis, stream: str) -> list[CommandOutcome]:
    """Every outcome on the stream, oldest first."""
    entries = cast(list[tuple[Any, Mapping[Any, Any]]], client.xrange(stream))
    return [read_outcome(fields) for _entry_id, fields in entries]


def wait_for_outcomes(
    client: redis.Redis,
    stream: str,
    command_ids: set[str],
    *,
    timeout_s: float,
    after: str = "0-0",
) -> dict[str, CommandOutcome]:
    """Follow the stream until every command_id has an event, or the deadline passes.

    Returns the first event seen for each command_id; raises TimeoutError naming the missing.
    """
    found: dict[str, CommandOutcome] = {}
    deadline = time.monotonic() + timeout_s
    last_id = after
    while len(found) < len(command_ids):
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            missing = sorted(command_ids - found.keys())
            raise TimeoutError(f"no event after {timeout_s}s for command_ids {missing[:10]}")
        reply = _read_after(client, stream, last_id, block_ms=min(remaining_ms, 1000))
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                outcome = read_outcome(fields)
                if outcome.command_id in command_ids:
                    found.setdefault(outcome.command_id, outcome)
    return found


# Waiting reads the result stream, which the producer ACL user cannot (by design).
NO_READ_RIGHTS = (
    "waiting for events reads the result stream, which this Redis user may not read: point"
    " ACCOUNT_RESET_EVENTS_URL at the events Redis as the auditor user"
    " (redis://account-reset-auditor:...), or send without waiting"
)


def _read_after(
    client: redis.Redis, stream: str, last_id: str, *, block_ms: int
) -> list[tuple[Any, list[tuple[Any, Mapping[Any, Any]]]]]:
    try:
        return cast(
            list[tuple[Any, list[tuple[Any, Mapping[Any, Any]]]]],
            client.xread({stream: last_id}, block=block_ms, count=500),
        )
    except redis.exceptions.NoPermissionError:
        raise PermissionError(NO_READ_RIGHTS) from None
