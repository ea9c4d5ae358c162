"""The rules of both commands, in the dashboard's order of checks, on the in-memory parts.

The same behaviours as tests/integration/test_rules.py and test_guessing.py, without a database
or Redis: every code a handler or the command's schema can answer with, what a success changes,
and what a refusal leaves as it was.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.in_memory import (
    InMemoryDatabase,
    RecordingObserver,
    UnitProcessor,
    password_payload,
    reset_password,
    reset_session_key,
    revoke,
)
from tests.support.payloads import CHECK_ORDER
from worker.security.hashing import Hasher

NEW_PASSWORD = "brand-new-password"


# reset-session-key


def test_missing_or_unknown_accountid_is_invalid_accountid(processor: UnitProcessor) -> None:
    missing = reset_session_key(processor, requester_accountid="acct_x")
    unknown = reset_session_key(processor, accountid="invalid", requester_accountid="invalid")
    assert (missing.code, missing.status) == ("invalid-accountid", "failure")
    assert unknown.code == "invalid-accountid"


@pytest.mark.parametrize("accountid", ["", 5, ["acct"], "a" * 1025])
def test_accountid_empty_or_of_the_wrong_type_is_invalid_accountid(
    processor: UnitProcessor, accountid: Any
) -> None:
    outcome = reset_session_key(processor, accountid=accountid, requester_accountid="acct_x")
    assert outcome.code == "invalid-accountid"


def test_another_accounts_sessions_is_invalid_account(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher)
    other, _ = db.add_account(hasher)
    outcome = reset_session_key(processor, accountid=other, requester_accountid=user)
    assert (outcome.code, outcome.accountid) == ("invalid-account", other)
    assert db.account(other).session_key_number == 1


def test_own_sessions_end_with_a_new_key_and_the_next_number(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher)
    before = db.account(user)

    first = revoke(processor, user)
    after = db.account(user)
    second = revoke(processor, user)

    assert (first.status, first.accountid, first.appid) == ("success", user, "test-app")
    assert after.session_key != before.session_key
    assert after.session_key is not None
    assert len(after.session_key) == 64
    assert after.session_key_number == 2
    assert after.session_key_last_reset_at is not None
    assert after.updated_at >= before.updated_at
    assert second.status == "success"
    assert db.account(user).session_key_number == 3
    assert db.account(user).password_hash == before.password_hash


def test_a_null_session_number_becomes_one(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    """The dashboard's `sessionKeyNumber++` on NULL: JavaScript's `null + 1`."""
    user, _ = db.add_account(hasher)
    db.accounts[user].session_key_number = None
    assert revoke(processor, user).status == "success"
    assert db.account(user).session_key_number == 1


def test_account_in_another_appid_is_invalid_accountid(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher, appid="other-app")
    assert revoke(processor, user).code == "invalid-accountid"
    assert revoke(processor, user, appid="other-app").status == "success"


@pytest.mark.parametrize("requester", [None, "", 7, ["x"], "r" * 1025, "acct\ud800"])
def test_missing_or_unusable_requester_is_invalid_account_after_the_account_check(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, requester: Any
) -> None:
    user, _ = db.add_account(hasher)
    payload: dict[str, Any] = {} if requester is None else {"requester_accountid": requester}
    assert reset_session_key(processor, accountid="acct_nobody", **payload).code == (
        "invalid-accountid"
    )
    assert reset_session_key(processor, accountid=user, **payload).code == "invalid-account"
    assert db.account(user).session_key_number == 1


def test_deleted_account_is_invalid_account(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher, deleted=True)
    assert revoke(processor, user).code == "invalid-account"
    assert db.account(user).session_key_number == 1


# reset-account-password


def test_missing_or_unknown_username_is_invalid_username(processor: UnitProcessor) -> None:
    for username in ("", "invalid"):
        outcome = reset_password(processor, **password_payload(username, "password", "code"))
        assert outcome.code == "invalid-username"


def test_missing_new_password_or_secret_code(processor: UnitProcessor) -> None:
    no_password = reset_password(processor, **password_payload("username", "", "code"))
    no_code = reset_password(processor, username="username", **{"new-password": "password"})
    assert no_password.code == "invalid-password"
    assert no_code.code == "invalid-secret-code"


def test_wrong_secret_code_is_invalid_reset_code_and_counts_an_attempt(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    user, username = db.add_account(hasher)
    db.add_code(hasher, user)
    outcome = reset_password(processor, **password_payload(username, "password", "invalid"))
    assert (outcome.code, outcome.accountid) == ("invalid-reset-code", user)
    assert processor.deps.attempts.used(appid="test-app", accountid=user) == 1
    assert observer.named("guess_checked") == [{}]
    assert db.codes_of(user) == 1


def test_reset_code_sets_the_password_ends_sessions_and_uses_up_codes(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    bystander, _ = db.add_account(hasher)
    code = db.add_code(hasher, user)
    db.add_code(hasher, user)
    db.add_code(hasher, bystander)
    reset_password(processor, **password_payload(username, "password", "a-wrong-code"))
    before = db.account(user)

    outcome = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))

    after = db.account(user)
    assert (outcome.status, outcome.accountid) == ("success", user)
    assert after.password_hash is not None
    assert hasher.password_matches(NEW_PASSWORD, after.password_hash)
    assert not hasher.password_matches("old-password", after.password_hash)
    assert after.session_key_number == (before.session_key_number or 0) + 1
    assert after.session_key != before.session_key
    assert after.password_last_changed_at is not None
    assert after.reset_code_last_used_at is not None
    assert db.codes_of(user) == 0
    assert db.codes_of(bystander) == 1
    # The success gave its attempts back once committed: the wrong one counts no more.
    assert processor.deps.attempts.used(appid="test-app", accountid=user) == 0


def test_someone_elses_reset_code_cannot_reset_a_password(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    attacker, _ = db.add_account(hasher)
    victim, victims_name = db.add_account(hasher)
    attackers_code = db.add_code(hasher, attacker)
    before = db.account(victim)

    outcome = reset_password(
        processor, **password_payload(victims_name, NEW_PASSWORD, attackers_code)
    )

    assert outcome.code == "invalid-reset-code"
    after = db.account(victim)
    assert (after.password_hash, after.session_key_number) == (
        before.password_hash,
        before.session_key_number,
    )
    assert db.codes_of(attacker) == 1


def test_used_code_cannot_be_used_again(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    code = db.add_code(hasher, user)
    first = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))
    again = reset_password(processor, **password_payload(username, "another-one", code))
    assert (first.status, again.code) == ("success", "invalid-reset-code")


def test_deleted_account_password_is_invalid_account_and_counts_nothing(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher, deleted=True)
    code = db.add_code(hasher, user)
    outcome = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))
    assert (outcome.code, outcome.accountid) == ("invalid-account", user)
    assert db.codes_of(user) == 1
    assert processor.deps.attempts.used(appid="test-app", accountid=user) == 0


def test_username_in_another_appid_is_invalid_username(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher, appid="other-app")
    code = db.add_code(hasher, user)
    outcome = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))
    assert outcome.code == "invalid-username"


@pytest.mark.parametrize(("payload", "code"), CHECK_ORDER)
def test_checks_run_in_the_dashboards_order(
    processor: UnitProcessor, payload: dict[str, Any], code: str
) -> None:
    assert reset_password(processor, **payload).code == code


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("username", "invalid-username"),
        ("new-password", "invalid-password"),
        ("secret-code", "invalid-secret-code"),
    ],
)
@pytest.mark.parametrize("value", [123456789, 1.5, ["password"], {"a": "b"}, True, "x\ud800"])
def test_wrong_type_or_invalid_unicode_gets_the_missing_code(
    processor: UnitProcessor,
    db: InMemoryDatabase,
    hasher: Hasher,
    field: str,
    code: str,
    value: Any,
) -> None:
    user, username = db.add_account(hasher)
    payload = password_payload(username, "password", db.add_code(hasher, user))
    payload[field] = value
    assert reset_password(processor, **payload).code == code
    assert db.codes_of(user) == 1


def test_emoji_password_counts_as_the_dashboard_counts_it(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    emoji_password = "\U0001f600" * 3  # six UTF-16 code units: long enough for the dashboard
    code = db.add_code(hasher, user)
    outcome = reset_password(processor, **password_payload(username, emoji_password, code))
    assert outcome.status == "success"
    assert hasher.password_matches(emoji_password, db.account(user).password_hash or "")


def test_underscore_names_and_unknown_fields_are_accepted(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    outcome = reset_password(
        processor,
        username=username,
        new_password=NEW_PASSWORD,
        secret_code=db.add_code(hasher, user),
        referrer="https://example.test",
    )
    assert outcome.status == "success"


# Guessing: the limits are checked before the code, and only a committed success gives back.


def test_after_five_wrong_codes_even_the_right_one_is_not_checked(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    user, username = db.add_account(hasher)
    code = db.add_code(hasher, user)
    before = db.account(user)
    wrong = [
        reset_password(processor, **password_payload(username, NEW_PASSWORD, f"wrong-{i}"))
        for i in range(5)
    ]

    right = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))

    assert {outcome.code for outcome in wrong} == {"invalid-reset-code"}
    assert (right.code, right.accountid) == ("too-many-attempts", user)
    assert db.account(user).password_hash == before.password_hash
    assert db.codes_of(user) == 1
    assert len(observer.named("guess_checked")) == 5
    assert observer.named("guess_refused") == [{"limit": "account"}]


def test_attempts_are_counted_per_account(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    _, username = db.add_account(hasher)
    other, others_name = db.add_account(hasher)
    for i in range(5):
        reset_password(processor, **password_payload(username, NEW_PASSWORD, f"wrong-{i}"))
    code = db.add_code(hasher, other)
    assert reset_password(processor, **password_payload(others_name, NEW_PASSWORD, code)).status \
        == "success"  # fmt: skip


def test_the_source_limit_stops_guesses_spread_over_accounts(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    names = [db.add_account(hasher)[1] for _ in range(25)]
    answers = [
        str(
            reset_password(
                processor, source="203.0.113.9", **password_payload(name, NEW_PASSWORD, "wrong")
            ).code
        )
        for name in names
    ]
    assert answers.count("invalid-reset-code") == 20
    assert answers[20:] == ["too-many-attempts"] * 5


def test_a_retried_delivery_gets_its_first_decision_and_counts_once(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    payload = password_payload(username, NEW_PASSWORD, "wrong")
    attempts = processor.deps.attempts
    command = {"appid": "test-app", "accountid": user, "command_id": "cmd-1"}
    first = attempts.reserve(**command, secret_code="wrong")
    again = attempts.reserve(**command, secret_code="wrong")
    another_code = attempts.reserve(**command, secret_code="another")
    assert first == again
    assert another_code.refused_by is None
    assert attempts.used(appid="test-app", accountid=user) == 2
    assert reset_password(processor, **payload).code == "invalid-reset-code"


def test_with_a_code_lifetime_an_older_code_is_invalid(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    lifetime = timedelta(hours=1)
    short_lived = dataclasses.replace(
        processor, deps=dataclasses.replace(processor.deps, code_ttl=lifetime)
    )
    user, username = db.add_account(hasher)
    old = db.add_code(hasher, user, created_at=datetime.now(UTC) - 2 * lifetime)
    fresh = db.add_code(hasher, user)

    stale = reset_password(short_lived, **password_payload(username, NEW_PASSWORD, old))
    good = reset_password(short_lived, **password_payload(username, NEW_PASSWORD, fresh))

    assert (stale.code, good.status) == ("invalid-reset-code", "success")


def test_without_a_code_lifetime_codes_never_expire(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    old = db.add_code(hasher, user, created_at=datetime.now(UTC) - timedelta(days=400))
    assert reset_password(processor, **password_payload(username, NEW_PASSWORD, old)).status == (
        "success"
    )
