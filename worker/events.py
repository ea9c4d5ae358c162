"""Publishes result events on the Redis stream, one entry per outcome.

Reading them back is the consumers' side: `client/events.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from schemas import CommandOutcome
from schemas.events import EVENT_FIELD


@dataclass(frozen=True)
class EventStream:
    client: redis.Redis
    stream: str
    maxlen: int | None

    def publish(self, outcome: CommandOutcome) -> str:
        """Append the event; consumers drop repeats by `event_id` (a replay repeats it)."""
        entry_id = self.client.xadd(
            self.stream,
            {EVENT_FIELD: outcome.model_dump_json()},
            maxlen=self.maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
