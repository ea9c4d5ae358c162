"""reset-session-keys on SQLite, PostgreSQL and MariaDB (issue 15, finding 3: bulk revocation).

PostgreSQL takes a chunk in one statement over arrays, the others lock the live accounts and
update each: both must change exactly the live accounts of the appid, as reset-session-key would.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import redis

from schemas import CommandOutcome, ResetSessionKeys
from schemas.commands import next_chunk
from schemas.events import EVENT_FIELD
from tasks import handlers
from tasks.pipeline import CommandProcessor
from tests.support.commands import run
from tests.support.ids import unique
from tests.support.seeding import Seeder
from worker import keys


def bulk(processor: CommandProcessor, **payload: Any) -> CommandOutcome:
    return run(processor, ResetSessionKeys, handlers.reset_session_keys, (), payload)


def test_a_listed_chunk_resets_the_live_accounts_of_its_appid_only(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    appid = unique("bulk-app")
    live = [seeder.account(appid=appid) for _ in range(3)]
    deleted = seeder.account(appid=appid, deleted=True)
    elsewhere = seeder.account(appid=unique("other-app"))
    before = {account.accountid: seeder.load(account.accountid) for account in live}
    untouched = {a.accountid: seeder.load(a.accountid).session_key for a in (deleted, elsewhere)}
    cached = [keys.dashboard_cache(account.accountid) for account in live]
    redis_client.set(cached[0], "cached account")

    listed = [*(account.accountid for account in live), deleted.accountid, elsewhere.accountid]
    outcome = bulk(processor, command_id=unique("run"), appid=appid, accountids=listed)

    assert outcome.bulk is not None
    assert outcome.bulk.accountids == sorted(account.accountid for account in live)
    assert outcome.bulk.not_reset == [deleted.accountid, elsewhere.accountid]
    for accountid, old in before.items():
        new = seeder.load(accountid)
        assert new.session_key != old.session_key
        assert len(new.session_key or "") == 64
        assert new.session_key_number == (old.session_key_number or 0) + 1
        assert new.session_key_last_reset_at is not None
    assert {a: seeder.load(a).session_key for a in untouched} == untouched
    assert redis_client.exists(*cached) == 0
    # The event on the stream names the accounts it reset.
    entries: Any = redis_client.xrange(processor.events.stream)
    published = CommandOutcome.model_validate_json(entries[0][1][EVENT_FIELD.encode()])
    assert published == outcome


def test_an_every_account_run_resets_each_account_of_its_appid_exactly_once(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Eleven accounts, chunks of four: three messages, each account's key number + 1 once,
    a replay of the middle message changes nothing."""
    appid = unique("bulk-app")
    accountids = sorted(seeder.account(appid=appid).accountid for _ in range(11))
    seeder.account(appid=appid, deleted=True)
    chunked = replace(processor, deps=replace(processor.deps, bulk_chunk=4))

    payload: dict[str, Any] | None = {
        "command_id": unique("run"), "appid": appid, "every_account": True,
    }  # fmt: skip
    reset: list[str] = []
    last = None
    while payload is not None:
        outcome = bulk(chunked, **payload)
        assert outcome.bulk is not None, outcome
        if outcome.bulk.chunk == 1:
            assert bulk(chunked, **payload) == outcome
        reset += outcome.bulk.accountids
        last = outcome.bulk
        payload = next_chunk(payload, outcome.bulk, appid=appid)

    assert reset == accountids
    assert last is not None
    assert last.done
    assert last.reset_so_far == 11
    assert {seeder.load(accountid).session_key_number for accountid in accountids} == {2}
