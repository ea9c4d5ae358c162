"""Guessing stopped, and the optional code lifetime, through the worker's command path.

Every test runs on SQLite and PostgreSQL with the real Redis that holds the attempt counts.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest

from tests.conftest import Seeder
from tests.test_rules import password_payload, reset_password
from worker.processing import CommandProcessor

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

    deadline = time.monotonic() + 10
    while one_second.used(**who) and time.monotonic() < deadline:
        time.sleep(0.05)  # Redis expires the count; each check is one GET, bounded by the deadline
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
