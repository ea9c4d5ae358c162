"""Following the result stream, alone or as a member of a Redis consumer group.

In a group, each entry is acknowledged (XACK) once handed to the printer, whether or not the
filter shows it; entries a consumer left pending (it died before acknowledging) are taken over
with XAUTOCLAIM once idle long enough, and this consumer's own pending entries (from a previous
run under the same name) are read again first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis

from client.events import Entry, follow, read_outcome, stream_end
from client.redis_clients import redis_client
from client.settings import ClientSettings
from schemas import CommandOutcome

BLOCK_MS = 1000
BATCH = 100


@dataclass(frozen=True)
class EventFilter:
    status: str | None = None
    code: str | None = None
    accountid: str | None = None

    def __call__(self, event: CommandOutcome) -> bool:
        return (
            (self.status is None or event.status.value == self.status)
            and (self.code is None or (event.code is not None and event.code.value == self.code))
            and (self.accountid is None or event.accountid == self.accountid)
        )


def tail_events(
    settings: ClientSettings,
    wanted: EventFilter,
    show: Callable[[CommandOutcome], None],
    *,
    group: str | None = None,
    consumer: str | None = None,
    from_start: bool = False,
    count: int | None = None,
    idle_timeout_s: float | None = None,
    claim_idle_s: float = 60.0,
) -> int:
    """Show each wanted event until `count` are shown or `idle_timeout_s` passes without one.

    Returns how many were shown.
    """
    client = redis_client(settings.events_redis_url, settings.redis_options, decode_responses=True)
    stream = settings.events_stream
    if group is not None and consumer is not None:
        member = _GroupReader(client, stream, group, consumer, from_start, claim_idle_s)
        reader: _GroupReader | None = member
        batches: Iterator[list[Entry]] = member.batches()
    else:
        reader = None
        after = "0-0" if from_start else stream_end(client, stream)
        batches = follow(client, stream, after=after, block_ms=BLOCK_MS, count=BATCH)
    ack: Callable[[Any], None] = reader.ack if reader is not None else (lambda _entry_id: None)
    try:
        return _follow(batches, wanted, show, ack, _Stop(count, idle_timeout_s))
    finally:
        client.close()


@dataclass
class _Stop:
    count: int | None
    idle_timeout_s: float | None
    quiet_since: float = 0.0

    def enough(self, shown: int) -> bool:
        return self.count is not None and shown >= self.count

    def idle(self, got_entries: bool) -> bool:
        now = time.monotonic()
        if got_entries or not self.quiet_since:
            self.quiet_since = now
        return self.idle_timeout_s is not None and now - self.quiet_since > self.idle_timeout_s


def _follow(
    batches: Iterator[list[Entry]],
    wanted: EventFilter,
    show: Callable[[CommandOutcome], None],
    ack: Callable[[Any], None],
    stop: _Stop,
) -> int:
    shown = 0
    for batch in batches:
        for entry_id, fields in batch:
            event = read_outcome(fields)
            if wanted(event):
                show(event)
                shown += 1
            ack(entry_id)
            if stop.enough(shown):
                return shown
        if stop.idle(bool(batch)):
            return shown
    return shown


@dataclass
class _GroupReader:
    client: redis.Redis
    stream: str
    group: str
    consumer: str
    from_start: bool
    claim_idle_s: float

    def batches(self) -> Iterator[list[Entry]]:
        self._create_group()
        yield from self._own_pending()
        while True:
            yield self._claim_abandoned()
            reply = cast(
                list[tuple[Any, list[Entry]]],
                self.client.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=BATCH, block=BLOCK_MS
                ),
            )
            yield [entry for _stream, batch in reply or [] for entry in batch]

    def ack(self, entry_id: Any) -> None:
        self.client.xack(self.stream, self.group, entry_id)

    def _create_group(self) -> None:
        try:
            self.client.xgroup_create(
                self.stream, self.group, id="0" if self.from_start else "$", mkstream=True
            )
        except redis.ResponseError as exists:
            if "BUSYGROUP" not in str(exists):
                raise

    def _own_pending(self) -> Iterator[list[Entry]]:
        last_id = "0"
        while True:
            reply = cast(
                list[tuple[Any, list[Entry]]],
                self.client.xreadgroup(
                    self.group, self.consumer, {self.stream: last_id}, count=BATCH
                ),
            )
            entries = [(i, f) for _s, batch in reply or [] for i, f in batch if f]
            if not entries:
                return
            last_id = entries[-1][0]
            yield entries

    def _claim_abandoned(self) -> list[Entry]:
        reply = self.client.xautoclaim(
            self.stream, self.group, self.consumer,
            min_idle_time=int(self.claim_idle_s * 1000), start_id="0-0", count=BATCH,
        )  # fmt: skip
        claimed = cast(list[Entry], reply[1] if reply else [])
        return [(entry_id, fields) for entry_id, fields in claimed if fields]
