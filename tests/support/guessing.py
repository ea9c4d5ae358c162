"""A real worker whose per-source guessing limit is 3, and wrong reset codes sent to it from one
device over several accounts: the run the e2e guessing and dashboard tests watch."""

from __future__ import annotations

from client import AccountResetClient
from tests.support.seeding import Seeder
from tests.support.workers import worker_env
from worker.dev.processes import free_port

SOURCE_LIMIT = 3
NEW_PASSWORD = "brand-new-password"


def source_limited_env(*, redis_url: str, database_url: str, prefix: str) -> dict[str, str]:
    """A worker's settings: `SOURCE_LIMIT` attempts per source, counted under `prefix`, and a
    metrics port."""
    return worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_MAX_SOURCE_ATTEMPTS=str(SOURCE_LIMIT),
        ACCOUNT_RESET_ATTEMPTS_KEY_PREFIX=prefix,
        ACCOUNT_RESET_METRICS_PORT=str(free_port()),
    )


def wrong_codes_from_one_device(
    client: AccountResetClient, seeder: Seeder, *, source: str, accounts: int = 3, rounds: int = 2
) -> list[str]:
    """`rounds` wrong codes for each of `accounts` new accounts, all from `source`: their ids."""
    users = [seeder.account() for _ in range(accounts)]
    return [
        client.reset_account_password(
            username=user.username,
            secret_code=f"guess-{n}",
            new_password=NEW_PASSWORD,
            source=source,
        )
        for n in range(rounds)
        for user in users
    ]
