"""The tests' one reader of a stream: XREAD blocks in Redis until entries come; no polling."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis

Fields = Mapping[Any, Any]


def follow_stream(
    client: redis.Redis, key: str, done: Callable[[list[Fields]], bool], timeout_s: float
) -> list[Fields]:
    """Read a stream from its start until `done(entries so far)`; TimeoutError at the deadline."""
    entries: list[Fields] = []
    last: Any = "0-0"
    deadline = time.monotonic() + timeout_s
    while not done(entries):
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError(f"{key}: condition not met after {timeout_s}s")
        reply = cast(
            list[tuple[Any, list[tuple[Any, Fields]]]],
            client.xread({key: last}, block=min(remaining_ms, 1000)),
        )
        for _key, batch in reply or []:
            for entry_id, fields in batch:
                last = entry_id
                entries.append(fields)
    return entries
