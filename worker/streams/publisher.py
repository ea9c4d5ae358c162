"""Publishes result events on the Redis stream, one entry per outcome.

Reading them back is the consumers' side: `client/events.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from schemas import CommandOutcome
from schemas.events import EVENT_FIELD


@dataclass(frozen=True)
class EventStream:
    client: redis.Redis
    stream: str
    maxlen: int | None
    # Entries older than this go at the relay's next round; None keeps them (length still trims).
    max_age: timedelta | None = None

    def publish(self, outcome: CommandOutcome) -> str:
        """Append the event; consumers drop repeats by `event_id` (a replay repeats it)."""
        entry_id = self.client.xadd(
            self.stream,
            {EVENT_FIELD: outcome.model_dump_json()},
            maxlen=self.maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def trim_by_age(self, now: datetime) -> int:
        """Drop entries older than `max_age` (stream ids are Redis's milliseconds)."""
        if self.max_age is None:
            return 0
        oldest_kept = int((now - self.max_age).timestamp() * 1000)
        return int(self.client.xtrim(self.stream, minid=f"{oldest_kept}-0", approximate=False))
