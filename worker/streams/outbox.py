"""The outbox relay: publishes outcomes that were committed but never made it to the stream.

Each task publishes its own outcome right after the commit and marks the row published. A
crash, or Redis out of reach past every retry, can leave a committed row unpublished; the relay
publishes those rows once they are older than a grace period (so it does not race the task
that is about to publish), then marks them. A row may so be published twice, never zero times:
consumers drop repeats by `event_id`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.db.unit_of_work import UnitOfWork
from worker.ops.metrics import PROMETHEUS, Observer
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.publisher import EventStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxRelay:
    sessions: sessionmaker[Session]
    events: EventStream
    dashboard: DashboardBookkeeping
    grace: timedelta
    batch_size: int
    retention: timedelta
    observer: Observer = PROMETHEUS

    def relay_once(self, now: datetime | None = None) -> int:
        """Publish one batch of overdue outcomes; returns how many."""
        now = now or datetime.now(UTC)
        with UnitOfWork(self.sessions) as uow:
            overdue = uow.unpublished_outcomes(
                recorded_before=now - self.grace, limit=self.batch_size
            )
            done = []
            for outcome in overdue:
                if self.dashboard.kept_after_commit(outcome):
                    done.append(outcome.event_id)
                self.events.publish(outcome)
                delay = (datetime.now(UTC) - outcome.occurred_at).total_seconds()
                self.observer.published(by="relay", delay_s=delay)
            if done:
                uow.mark_published(done, now)
            uow.prune_outcomes(published_before=now - self.retention)
            uow.commit()
        self.events.trim_by_age(now)
        if overdue:
            log.warning("relayed %d outcome(s) committed but not published", len(overdue))
        return len(overdue)

    def run(self, *, interval_s: float, stop: threading.Event) -> None:
        """Relay until `stop` is set; a fault waits for the next round."""
        while not stop.wait(interval_s):
            try:
                while self.relay_once() == self.batch_size and not stop.is_set():
                    pass
            except (SQLAlchemyError, redis.RedisError) as exc:
                log.warning("outbox relay: %s, will try again", type(exc).__name__)
