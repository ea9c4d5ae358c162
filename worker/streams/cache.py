"""The dashboard's storage cache: an account's entry goes once its sessions or password change."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker import keys


@dataclass(frozen=True)
class DashboardCache:
    client: redis.Redis | None

    def forget(self, accountid: str) -> None:
        if self.client is not None:
            self.client.delete(keys.dashboard_cache(accountid))
