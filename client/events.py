"""Reading result events back from the Redis stream: one outcome per entry, in field `event`.

`follow` is the one reader of a stream (XREAD): the producer's wait, `events tail`, the demo
and the benchmark all read through it. Readers make their clients with `decode_responses=True`,
so entry ids and fields come as text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import redis

from schemas import CommandOutcome
from schemas.events import EVENT_FIELD

# An entry's id and fields: text from a client with decode_responses, bytes from another.
Entry = tuple[Any, Mapping[Any, Any]]
BLOCK_MS = 1000
BATCH = 500

# Reading the result stream is the auditor's right, which the producer ACL user lacks (by design).
NO_READ_RIGHTS = (
    "reading result events needs the result stream, which this Redis user may not read: point"
    " ACCOUNT_RESET_EVENTS_URL at the events Redis as the auditor user"
    " (redis://account-reset-auditor:...), or send without waiting"
)


def event_json(fields: Mapping[Any, Any]) -> str:
    """The JSON text of the event in one stream entry's fields."""
    raw = fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.encode()))
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
    entries = cast(list[Entry], client.xrange(stream))
    return [read_outcome(fields) for _entry_id, fields in entries]


def stream_end(client: redis.Redis, stream: str) -> Any:
    """The id of the newest entry ("0-0" for an empty stream): reading after it reads what comes
    from now on. Taken once, before anything is sent, nothing sent later is missed."""
    newest = cast(list[Entry], client.xrevrange(stream, count=1))
    return newest[0][0] if newest else "0-0"


def follow(
    client: redis.Redis,
    stream: str,
    *,
    after: Any = "0-0",
    deadline: float | None = None,
    block_ms: int = BLOCK_MS,
    count: int = BATCH,
) -> Iterator[list[Entry]]:
    """The entries after `after`, oldest first, a batch as they come; an empty batch after each
    `block_ms` without one (XREAD blocks in Redis: nothing polls). Ends once `deadline` (a
    `time.monotonic()` value) passes; never without one. PermissionError where this Redis user
    may not read the stream."""
    last_id = after
    while True:
        block = block_ms
        if deadline is not None:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return
            block = min(block_ms, remaining_ms)
        try:
            reply = cast(
                list[tuple[Any, list[Entry]]],
                client.xread({stream: last_id}, block=block, count=count),
            )
        except redis.exceptions.NoPermissionError:
            raise PermissionError(NO_READ_RIGHTS) from None
        entries = [entry for _stream, batch in reply or [] for entry in batch]
        if entries:
            last_id = entries[-1][0]
        yield entries


class OutcomesMissing(TimeoutError):
    """The deadline passed before every command had its event: `missing` names them all (the
    message only the first ten), `found` holds the events that came."""

    def __init__(self, timeout_s: float, missing: list[str], found: dict[str, CommandOutcome]):
        super().__init__(f"no event after {timeout_s}s for command_ids {missing[:10]}")
        self.missing = missing
        self.found = found


def wait_for_outcomes(
    client: redis.Redis,
    stream: str,
    command_ids: set[str],
    *,
    timeout_s: float,
    after: str = "0-0",
    on_event: Callable[[CommandOutcome], None] | None = None,
) -> dict[str, CommandOutcome]:
    """Follow the stream until every command_id has an event, or the deadline passes.

    Returns the first event seen for each command_id, each also handed to `on_event` as it
    comes; raises OutcomesMissing (a TimeoutError) naming the missing.
    """
    found: dict[str, CommandOutcome] = {}
    if not command_ids:
        return found
    for batch in follow(client, stream, after=after, deadline=time.monotonic() + timeout_s):
        for _entry_id, fields in batch:
            outcome = read_outcome(fields)
            if outcome.command_id in command_ids and outcome.command_id not in found:
                found[outcome.command_id] = outcome
                if on_event is not None:
                    on_event(outcome)
        if len(found) == len(command_ids):
            return found
    raise OutcomesMissing(timeout_s, sorted(command_ids - found.keys()), found)
