"""The dashboard's storage cache: an account's entry goes once its sessions or password change."""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class DashboardCache:
    client: redis.Redis | None

    def forget(self, accountid: str) -> None:
        # The dashboard keys its cache by the bare accountid.
        if self.client is not None:
            self.client.delete(accountid)
