"""The dashboard's storage cache: an account's entry goes once its sessions or password change."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker import keys


@dataclass(frozen=True)
class DashboardCache:
    client: redis.Redis | None

    def forget(self, *accountids: str) -> None:
        """One DEL for them all (a reset-session-keys chunk forgets up to a thousand)."""
        if self.client is not None and accountids:
            self.client.delete(*(keys.dashboard_cache(accountid) for accountid in accountids))
