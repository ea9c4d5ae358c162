"""The dashboard's own bookkeeping, kept as its own endpoints keep it.

After a command the dashboard forgets the account's cache entry, and a used reset code counts in
its `resetcodes-used` metric (a Sequelize hook on the account update): four counters named
`resetcodes-used/<yyyy>`, `/<yyyy-mm>`, `/<yyyy-mm-dd>` (its Node process's local date) and
`/total`, in its `metrics` table or, with `STORAGE_METRICS=redis`, in the hash `<appid>/metrics`.

Counted exactly once per applied command: in the command's own transaction for the table, and
for Redis after the commit, under a marker per event that a replay, the outbox relay or the
final-failure path finds already set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import redis

from schemas import CommandOutcome, OutcomeStatus, ResetAccountPassword
from worker import keys
from worker.streams.cache import DashboardCache

log = logging.getLogger(__name__)

RESET_CODES_USED = "resetcodes-used"
# The markers' common prefix, as tests know it (worker/keys.py names every key).
COUNTED_MARKER_PREFIX = keys.COUNTED_MARKER_PREFIX

# Set the marker and increment every counter, or do nothing if the marker is there.
# KEYS[1]: marker, KEYS[2]: the dashboard's hash; ARGV[1]: marker lifetime (s); ARGV[2..]: fields.
_COUNT_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV do
    redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  end
  return 1
end
return 0
"""

MetricsStore = Literal["database", "redis", "off"]


class MetricRows(Protocol):
    """The dashboard's metrics table, in a command's transaction (a unit of work)."""

    def count_dashboard_metric(
        self, *, appid: str, metricids: list[str], now: datetime
    ) -> None: ...


def metric_ids(name: str, moment: datetime, zone: ZoneInfo) -> list[str]:
    """The dashboard's counter ids for `moment`, by the date where the dashboard runs."""
    local = moment.astimezone(zone)
    year = f"{name}/{local.year:04d}"
    month = f"{year}-{local.month:02d}"
    return [year, month, f"{month}-{local.day:02d}", f"{name}/total"]


@dataclass(frozen=True)
class DashboardBookkeeping:
    cache: DashboardCache
    metrics_store: MetricsStore = "off"
    metrics_client: redis.Redis | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # How long a Redis marker stays: as long as the command_id is remembered, and a day more.
    marker_ttl_s: int = 31 * 24 * 3600

    def in_transaction(self, uow: MetricRows, outcome: CommandOutcome) -> None:
        """Count in the dashboard's table with the update itself (a rollback uncounts it)."""
        if self.metrics_store == "database" and _counts(outcome):
            assert outcome.appid is not None
            uow.count_dashboard_metric(
                appid=outcome.appid,
                metricids=metric_ids(RESET_CODES_USED, outcome.occurred_at, self.zone),
                now=outcome.occurred_at,
            )

    def kept_after_commit(self, outcome: CommandOutcome) -> bool:
        """`after_commit`, or False when a Redis refused it: the event still goes out, and the
        outcome is left unmarked so that the outbox relay keeps the books (and publishes the
        event once more) at its next round."""
        try:
            self.after_commit(outcome)
        except redis.RedisError as exc:
            log.warning(
                "event %s: the dashboard's cache or metrics unreachable (%s), kept later",
                outcome.event_id, type(exc).__name__,
            )  # fmt: skip
            return False
        return True

    def after_commit(self, outcome: CommandOutcome) -> None:
        """Safe to repeat for one outcome: every path that publishes it calls this first."""
        if outcome.status is OutcomeStatus.SUCCESS and outcome.accountid:
            self.cache.forget(outcome.accountid)
        if outcome.bulk is not None:
            self.cache.forget(*outcome.bulk.accountids)
        if self.metrics_store == "redis" and _counts(outcome) and self.metrics_client:
            fields = metric_ids(RESET_CODES_USED, outcome.occurred_at, self.zone)
            self.metrics_client.eval(
                _COUNT_ONCE,
                2,
                keys.counted_marker(outcome.event_id),
                keys.dashboard_metrics(str(outcome.appid)),
                self.marker_ttl_s,
                *fields,
            )


def _counts(outcome: CommandOutcome) -> bool:
    return outcome.status is OutcomeStatus.SUCCESS and outcome.command == ResetAccountPassword.name
