"""Guessing stopped, and the optional code lifetime, through the worker's command path.

The rules' tests run on SQLite, PostgreSQL and MariaDB with the real Redis that holds the
attempt counts; tests/e2e/test_guessing_on_a_worker.py runs the same limits in real workers.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from schemas.json_schema import wire_contract
from tasks.pipeline import CommandProcessor
from tests.support.commands import password_payload, reset_password
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from worker.security.attempts import CodeAttempts
from worker.settings import Settings

NEW_PASSWORD = "brand-new-password"
MAX_ATTEMPTS = 5


def wrong_codes(processor: CommandProcessor, username: str, count: int) -> list[str | None]:
    return [
        reset_password(processor, **password_payload(username, NEW_PASSWORD, f"wrong-{i}")).code
        for i in range(count)
    ]


def test_after_five_wrong_codes_even_the_right_one_is_not_checked(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)

    codes = wrong_codes(processor, user.username, MAX_ATTEMPTS + 2)
    right = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    print(f"\nattempt codes: {[*codes, right.code]}")
    assert codes == ["invalid-reset-code"] * MAX_ATTEMPTS + ["too-many-attempts"] * 2
    assert right.code == "too-many-attempts"
    assert right.accountid == user.accountid
    account = seeder.load(user.accountid)
    assert not seeder.hasher.password_matches(NEW_PASSWORD, account.password_hash or "")
    assert seeder.codes_of(user.accountid) == 1
    assert account.session_key_number == 1


@pytest.mark.parametrize("spelling", ["TEST-APP", "test-app ", "tEst-app"])
def test_review_finding_an_appid_spelled_otherwise_brings_no_fresh_attempts(
    processor: CommandProcessor, seeder: Seeder, spelling: str
) -> None:
    """The adversarial review of this issue, on MariaDB: its collation finds the account of
    `test-app` under `TEST-APP`, `test-app ` or `tEst-app`, while the counts were keyed by the
    appid as sent. After 5 wrong codes, each spelling had its codes checked again, and the
    right code under `Test-App` reset the password while `test-app` was locked out. Counts now
    go by the account row's own appid; elsewhere the spelling finds no account at all."""
    user = seeder.account()
    code = seeder.code(user)
    assert wrong_codes(processor, user.username, MAX_ATTEMPTS)[-1] == "invalid-reset-code"

    other = password_payload(user.username, NEW_PASSWORD, "wrong-again")
    right = password_payload(user.username, NEW_PASSWORD, code)
    answers = [reset_password(processor, appid=spelling, **payload) for payload in (other, right)]

    assert {a.code for a in answers} <= {"too-many-attempts", "invalid-username"}
    account = seeder.load(user.accountid)
    assert not seeder.hasher.password_matches(NEW_PASSWORD, account.password_hash or "")
    assert seeder.codes_of(user.accountid) == 1


def test_a_success_clears_the_count(processor: CommandProcessor, seeder: Seeder) -> None:
    user = seeder.account()
    code = seeder.code(user)
    attempts = processor.deps.attempts
    who = {"appid": user.appid, "accountid": user.accountid}

    assert wrong_codes(processor, user.username, MAX_ATTEMPTS - 1) == ["invalid-reset-code"] * 4
    assert attempts.used(**who) == MAX_ATTEMPTS - 1
    right = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    assert right.status == "success"
    assert attempts.used(**who) == 0
    # A full allowance again: five more wrong codes before the limit.
    assert wrong_codes(processor, user.username, MAX_ATTEMPTS + 1) == [
        *["invalid-reset-code"] * MAX_ATTEMPTS,
        "too-many-attempts",
    ]


def test_attempts_are_counted_per_account(processor: CommandProcessor, seeder: Seeder) -> None:
    guessed, other = seeder.account(), seeder.account()
    code = seeder.code(other)
    wrong_codes(processor, guessed.username, MAX_ATTEMPTS + 1)

    outcome = reset_password(processor, **password_payload(other.username, NEW_PASSWORD, code))

    assert outcome.status == "success"


def test_once_the_window_passes_the_code_is_checked_again(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    one_second = dataclasses.replace(processor.deps.attempts, window_s=1)
    processor = dataclasses.replace(
        processor, deps=dataclasses.replace(processor.deps, attempts=one_second)
    )
    user = seeder.account()
    code = seeder.code(user)
    who = {"appid": user.appid, "accountid": user.accountid}
    assert wrong_codes(processor, user.username, MAX_ATTEMPTS + 1)[-1] == "too-many-attempts"

    # Redis expires the count; each check is one GET.
    poll_until(lambda: not one_second.used(**who), 10, "the one-second window's count expired")
    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    assert outcome.status == "success"


@pytest.mark.parametrize(
    ("age", "expected"),
    [(timedelta(minutes=59), "success"), (timedelta(minutes=61), "invalid-reset-code")],
)
def test_with_a_code_lifetime_an_older_code_is_invalid(
    processor: CommandProcessor, seeder: Seeder, age: timedelta, expected: str
) -> None:
    processor = dataclasses.replace(
        processor, deps=dataclasses.replace(processor.deps, code_ttl=timedelta(hours=1))
    )
    user = seeder.account()
    code = seeder.code(user, age=age)

    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    assert (outcome.code or "success") == expected


def test_without_a_code_lifetime_codes_never_expire(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user, age=timedelta(days=3650))

    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    assert outcome.status == "success"


# Finding 2: guessing spread thin, retries, the commit, eviction.

ACCOUNTS = 20
# Within the per-account limit (5): every one of them would be checked as far as the account goes.
WRONG_CODES_EACH = 5


def with_attempts(processor: CommandProcessor, **limits: Any) -> CommandProcessor:
    attempts = dataclasses.replace(processor.deps.attempts, **limits)
    deps = dataclasses.replace(processor.deps, attempts=attempts)
    return dataclasses.replace(processor, deps=deps)


def spread_wrong_codes(
    processor: CommandProcessor, seeder: Seeder, *, source: Any = None
) -> list[str | None]:
    """Finding 2's attack: 5 wrong codes at each of 20 accounts (each with a code of its own),
    one round over all the accounts at a time."""
    users = [seeder.account() for _ in range(ACCOUNTS)]
    for user in users:
        seeder.code(user)
    sent_from = {} if source is None else {"source": source}
    return [
        reset_password(
            processor, **password_payload(user.username, NEW_PASSWORD, f"guess-{n}"), **sent_from
        ).code
        for n in range(WRONG_CODES_EACH)
        for user in users
    ]


def refused_by(limit: str) -> float:
    found = REGISTRY.get_sample_value("account_reset_guesses_refused_total", {"limit": limit})
    return found or 0.0


def checked() -> float:
    return REGISTRY.get_sample_value("account_reset_guesses_checked_total") or 0.0


def counts_keys(client: redis.Redis, attempts: CodeAttempts) -> list[str]:
    return [key.decode() for key in client.scan_iter(f"{attempts.key_prefix}:*", count=1000)]


@contextmanager
def commit_fails_once(processor: CommandProcessor) -> Iterator[None]:
    """The next COMMIT on the processor's database fails, as when the connection drops at that
    moment: nothing is committed, and the task would retry the same delivery."""
    engine: Engine = processor.units.sessions.kw["bind"]
    failed: list[bool] = []

    def fail(_connection: Any) -> None:
        if not failed:
            failed.append(True)
            raise OperationalError("COMMIT", {}, ConnectionError("connection lost at COMMIT"))

    event.listen(engine, "commit", fail)
    try:
        yield
    finally:
        event.remove(engine, "commit", fail)
    assert failed


def test_finding_2_100_wrong_codes_over_20_accounts_from_one_source_only_20_checked(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Finding 2: 100 wrong codes spread over 20 accounts (5 each, within the per-account limit)
    were all checked. From one source only MAX_SOURCE_ATTEMPTS (20) are; the other 80 are
    too-many-attempts, counted by the metric, while another source is still checked. The
    source's count is named by an HMAC: its raw value is in no key and no event."""
    attempts = processor.deps.attempts
    source = unique("client-address-sha256")
    refused_before, checked_before = refused_by("source"), checked()

    codes = spread_wrong_codes(processor, seeder, source=source)
    elsewhere = seeder.account()
    other = reset_password(
        processor,
        **password_payload(elsewhere.username, NEW_PASSWORD, "guess"),
        source=unique("another-device"),
    )

    print(f"\n100 wrong codes over 20 accounts from one source: {dict(Counter(codes))}")
    assert Settings.model_fields["max_source_attempts"].default == attempts.max_source_attempts
    assert attempts.max_source_attempts == 20
    assert codes[:20] == ["invalid-reset-code"] * 20
    assert codes[20:] == ["too-many-attempts"] * 80
    assert other.code == "invalid-reset-code"
    assert refused_by("source") - refused_before == 80
    assert checked() - checked_before == 21
    assert attempts.used_by_source(appid="test-app", source=source) == 20
    keys = counts_keys(redis_client, attempts)
    assert any(":source:" in key for key in keys)
    assert not [key for key in keys if source in key]
    assert source not in str(redis_client.xrange(processor.events.stream))


def test_finding_2_without_a_source_the_appid_ceiling_stops_them(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Finding 2, from a producer that passes no source: the same 100 wrong codes over 20
    accounts, with MAX_APPID_ATTEMPTS at 30: 30 are checked, the other 70 are
    too-many-attempts."""
    ceiling = with_attempts(processor, max_appid_attempts=30)
    refused_before = refused_by("appid")

    codes = spread_wrong_codes(ceiling, seeder)

    print(f"\n100 wrong codes over 20 accounts, appid ceiling 30: {dict(Counter(codes))}")
    assert codes == ["invalid-reset-code"] * 30 + ["too-many-attempts"] * 70
    assert refused_by("appid") - refused_before == 70
    assert ceiling.deps.attempts.used_by_appid(appid="test-app") == 30


def test_finding_2_a_retried_delivery_is_counted_once(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Finding 2: a transient retry burnt an attempt. Four wrong codes whose commits fail once
    each, every one then retried under its command_id: four attempts counted, not eight, and
    the owner's right code still works (before, the third retry was already refused)."""
    user = seeder.account()
    code = seeder.code(user)
    attempts = processor.deps.attempts
    codes = []
    for n in range(4):
        payload = password_payload(user.username, NEW_PASSWORD, f"guess-{n}")
        delivery = {**payload, "command_id": unique("cmd")}
        with commit_fails_once(processor), pytest.raises(OperationalError):
            reset_password(processor, **delivery)
        codes.append(reset_password(processor, **delivery).code)
    counted = attempts.used(appid=user.appid, accountid=user.accountid)
    by_appid = attempts.used_by_appid(appid=user.appid)
    right = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    print(
        f"\n4 deliveries, each retried once: {codes}, counted {counted}; right code: {right.code}"
    )
    assert codes == ["invalid-reset-code"] * 4
    assert (counted, by_appid) == (4, 4)
    assert right.status == "success"


def test_another_code_under_a_used_command_id_is_another_attempt(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Only a retry of the same delivery gets the earlier decision: a different code sent under
    the command_id of a delivery whose commit failed is counted, so reusing a command_id is no
    way to have codes checked uncounted."""
    user = seeder.account()
    command_id = unique("cmd")
    first, second = (
        {**password_payload(user.username, NEW_PASSWORD, guess), "command_id": command_id}
        for guess in ("guess-1", "guess-2")
    )
    with commit_fails_once(processor), pytest.raises(OperationalError):
        reset_password(processor, **first)

    outcome = reset_password(processor, **second)

    assert outcome.code == "invalid-reset-code"
    assert processor.deps.attempts.used(appid=user.appid, accountid=user.accountid) == 2


def test_without_a_hash_key_a_retry_is_still_counted_once(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """A stock dashboard (HASH_MODE=unkeyed) gives no secret to name counts by: the code is
    then left out of every name, and a retried delivery is still counted once."""
    unkeyed = with_attempts(processor, naming_key=None)
    user = seeder.account()
    delivery = {**password_payload(user.username, NEW_PASSWORD, "guess"), "command_id": unique("c")}
    with commit_fails_once(unkeyed), pytest.raises(OperationalError):
        reset_password(unkeyed, **delivery)

    outcome = reset_password(unkeyed, **delivery)

    assert outcome.code == "invalid-reset-code"
    assert unkeyed.deps.attempts.used(appid=user.appid, accountid=user.accountid) == 1
    assert (
        len([k for k in counts_keys(redis_client, unkeyed.deps.attempts) if ":delivery:" in k]) == 1
    )


def test_finding_2_the_count_is_cleared_only_after_the_commit(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Finding 2: the count was cleared inside the transaction, before the commit. Three wrong
    codes, then the right one, whose commit fails: the password is unchanged and the count
    stands at 4 (three wrong codes and this attempt). The retry commits, and only then is the
    account's count cleared and the source's and appid's attempt given back (3 each)."""
    user = seeder.account()
    code = seeder.code(user)
    attempts = processor.deps.attempts
    source = unique("device")
    who = {"appid": user.appid, "accountid": user.accountid}
    for n in range(3):
        payload = password_payload(user.username, NEW_PASSWORD, f"guess-{n}")
        assert reset_password(processor, **payload, source=source).code == "invalid-reset-code"
    right = {**password_payload(user.username, NEW_PASSWORD, code), "command_id": unique("cmd")}

    with commit_fails_once(processor), pytest.raises(OperationalError):
        reset_password(processor, **right, source=source)
    after_the_failed_commit = attempts.used(**who)
    unchanged = not seeder.hasher.password_matches(
        NEW_PASSWORD, seeder.load(user.accountid).password_hash or ""
    )
    retried = reset_password(processor, **right, source=source)

    print(f"\ncount after the failed commit: {after_the_failed_commit}; retry: {retried.status}")
    assert (after_the_failed_commit, unchanged) == (4, True)
    assert retried.status == "success"
    assert attempts.used(**who) == 0
    assert attempts.used_by_source(appid=user.appid, source=source) == 3
    assert attempts.used_by_appid(appid=user.appid) == 3


@pytest.mark.parametrize("source", [5, "", "x" * 201, "nul\x00", {"a": 1}, ["list"], None])
def test_an_unusable_source_counts_as_absent(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis, source: Any
) -> None:
    """An old producer, or one that sends something odd as `source`, is answered as if it had
    sent none: never invalid-payload, and no source is counted."""
    user = seeder.account()

    outcome = reset_password(
        processor, **password_payload(user.username, NEW_PASSWORD, "guess"), source=source
    )

    assert outcome.code == "invalid-reset-code"
    assert processor.deps.attempts.used_by_appid(appid=user.appid) == 1
    assert not [
        key for key in counts_keys(redis_client, processor.deps.attempts) if ":source:" in key
    ]


def test_the_schema_describes_source() -> None:
    import jsonschema

    schema = wire_contract()["reset-account-password"]
    validator = jsonschema.Draft202012Validator(schema)
    command = {"username": "alice1", "new-password": "secret-1", "secret-code": "abc"}

    assert "source" not in schema["required"]
    assert validator.is_valid({**command, "source": "sha256:9f86d08"})
    assert not validator.is_valid({**command, "source": "x" * 201})
