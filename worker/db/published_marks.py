"""Outcomes this process has published, marked so in the database a batch at a time.

Marking is bookkeeping: it only spares the outbox relay (worker/streams/outbox.py) publishing an
event a second time. One UPDATE per event was a round trip on every command; here the event
ids gather for at most `within_s` (or until `batch_size` of them), then one UPDATE marks them
all. `within_s` stays well under the relay's grace, so the relay does not see them unmarked;
ids still gathered when the process ends unexpectedly are published once more by the relay,
which consumers drop by `event_id`, as after any crash.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.db.unit_of_work import mark_published_now

log = logging.getLogger(__name__)

# Marked within half a second, or at once when this many are waiting.
MARK_WITHIN_S = 0.5
MARK_BATCH_SIZE = 100


@dataclass
class PublishedMarks:
    sessions: sessionmaker[Session]
    within_s: float = MARK_WITHIN_S
    batch_size: int = MARK_BATCH_SIZE
    _waiting: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None

    def add(self, event_ids: list[str]) -> None:
        """Mark these published within `within_s`."""
        with self._lock:
            self._waiting += event_ids
            full = len(self._waiting) >= self.batch_size
            if not full and self._timer is None:
                self._timer = threading.Timer(self.within_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Mark every waiting id now, in one UPDATE; a database fault leaves them to the relay."""
        with self._lock:
            event_ids, self._waiting = self._waiting, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if not event_ids:
            return
        try:
            mark_published_now(self.sessions, event_ids, datetime.now(UTC))
        except SQLAlchemyError as exc:
            # Only bookkeeping: the events are out; the relay will publish them once more.
            log.warning("%d event(s) published, not marked: %s", len(event_ids), type(exc).__name__)
