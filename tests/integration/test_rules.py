"""The rules of both commands, through the worker's command path, on SQLite and PostgreSQL.

Every test case of the two dashboard seeds is here, plus the holes the seeds left open.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import redis

from client.events import event_json, read_outcome, stream_outcomes
from tasks.pipeline import CommandProcessor
from tests.support.commands import NEW_PASSWORD, password_payload, reset_password, reset_session_key
from tests.support.ids import unique
from tests.support.payloads import CHECK_ORDER
from tests.support.seeding import Seeder

# reset-session-key: the seed's cases.


def test_missing_accountid_is_invalid_accountid(processor: CommandProcessor) -> None:
    outcome = reset_session_key(processor, requester_accountid="acct_x")
    assert outcome.code == "invalid-accountid"
    assert outcome.status == "failure"


def test_unknown_accountid_is_invalid_accountid(processor: CommandProcessor) -> None:
    outcome = reset_session_key(processor, accountid="invalid", requester_accountid="invalid")
    assert outcome.code == "invalid-accountid"


def test_another_accounts_sessions_is_invalid_account(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user, user2 = seeder.account(), seeder.account()
    outcome = reset_session_key(
        processor, accountid=user2.accountid, requester_accountid=user.accountid
    )
    assert outcome.code == "invalid-account"
    assert seeder.load(user2.accountid).session_key_number == 1


def test_own_sessions_end_with_a_new_key_and_the_next_number(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    before = seeder.load(user.accountid)

    first = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid
    )
    after_first = seeder.load(user.accountid)
    reset_session_key(processor, accountid=user.accountid, requester_accountid=user.accountid)
    after_second = seeder.load(user.accountid)

    assert first.status == "success"
    assert first.code is None
    assert first.accountid == user.accountid
    # The seed's post-increment stored the old number: each reset must advance it.
    assert (before.session_key_number, after_first.session_key_number) == (1, 2)
    assert after_second.session_key_number == 3
    assert after_first.session_key != before.session_key
    assert after_second.session_key != after_first.session_key
    assert len(after_first.session_key or "") == 64
    assert after_first.session_key_last_reset_at is not None


# reset-session-key: beyond the seed.


@pytest.mark.parametrize("accountid", ["", 42, None, ["acct"], {"id": "acct"}, True])
def test_accountid_empty_or_of_the_wrong_type_is_invalid_accountid(
    processor: CommandProcessor, accountid: Any
) -> None:
    outcome = reset_session_key(processor, accountid=accountid, requester_accountid="acct_x")
    assert outcome.code == "invalid-accountid"


def test_account_in_another_appid_is_invalid_accountid(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account(appid="other-app")
    outcome = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid
    )
    assert outcome.code == "invalid-accountid"
    outcome = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid, appid="other-app"
    )
    assert outcome.status == "success"


@pytest.mark.parametrize("requester", [None, "", 7, ["x"]])
def test_missing_or_wrong_type_requester_is_invalid_account(
    processor: CommandProcessor, seeder: Seeder, requester: Any
) -> None:
    user = seeder.account()
    payload: dict[str, Any] = {"accountid": user.accountid}
    if requester is not None:
        payload["requester_accountid"] = requester
    assert reset_session_key(processor, **payload).code == "invalid-account"


def test_unknown_account_is_checked_before_the_requester(processor: CommandProcessor) -> None:
    assert reset_session_key(processor, accountid="acct_nobody").code == "invalid-accountid"


def test_deleted_account_is_invalid_account(processor: CommandProcessor, seeder: Seeder) -> None:
    user = seeder.account(deleted=True)
    outcome = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid
    )
    assert outcome.code == "invalid-account"
    assert seeder.load(user.accountid).session_key_number == 1


# reset-account-password: the seed's cases.


def test_missing_username_is_invalid_username(processor: CommandProcessor) -> None:
    outcome = reset_password(processor, **password_payload("", "password", "code"))
    assert outcome.code == "invalid-username"


def test_unknown_username_is_invalid_username(processor: CommandProcessor) -> None:
    outcome = reset_password(processor, **password_payload("invalid", "password", "code"))
    assert outcome.code == "invalid-username"


def test_missing_new_password_is_invalid_password(processor: CommandProcessor) -> None:
    outcome = reset_password(processor, **password_payload("username", "", "code"))
    assert outcome.code == "invalid-password"


def test_missing_secret_code_is_invalid_secret_code(processor: CommandProcessor) -> None:
    outcome = reset_password(processor, username="username", **{"new-password": "password"})
    assert outcome.code == "invalid-secret-code"


def test_wrong_secret_code_is_invalid_reset_code(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    seeder.code(user)
    outcome = reset_password(processor, **password_payload(user.username, "password", "invalid"))
    assert outcome.code == "invalid-reset-code"
    assert outcome.accountid == user.accountid


def test_reset_code_sets_the_password_ends_sessions_and_uses_up_codes(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user, bystander = seeder.account(), seeder.account()
    code = seeder.code(user)
    seeder.code(user)
    seeder.code(bystander)
    before = seeder.load(user.accountid)

    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))

    after = seeder.load(user.accountid)
    assert outcome.status == "success"
    assert outcome.accountid == user.accountid
    assert after.password_hash is not None
    assert seeder.hasher.password_matches(NEW_PASSWORD, after.password_hash)
    assert not seeder.hasher.password_matches("old-password", after.password_hash)
    assert after.session_key_number == (before.session_key_number or 0) + 1
    assert after.session_key != before.session_key
    assert after.password_last_changed_at is not None
    assert after.reset_code_last_used_at is not None
    assert seeder.codes_of(user.accountid) == 0
    assert seeder.codes_of(bystander.accountid) == 1


# reset-account-password: beyond the seed.


def test_someone_elses_reset_code_cannot_reset_a_password(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    attacker, victim = seeder.account(), seeder.account()
    attackers_code = seeder.code(attacker)
    victim_before = seeder.load(victim.accountid)

    outcome = reset_password(
        processor, **password_payload(victim.username, NEW_PASSWORD, attackers_code)
    )

    assert outcome.code == "invalid-reset-code"
    victim_after = seeder.load(victim.accountid)
    assert victim_after.password_hash == victim_before.password_hash
    assert victim_after.session_key_number == victim_before.session_key_number
    assert seeder.codes_of(attacker.accountid) == 1


def test_used_code_cannot_be_used_again(processor: CommandProcessor, seeder: Seeder) -> None:
    user = seeder.account()
    code = seeder.code(user)
    assert (
        reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code)).status
        == "success"
    )
    again = reset_password(processor, **password_payload(user.username, "another-one", code))
    assert again.code == "invalid-reset-code"


def test_deleted_account_password_is_invalid_account(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account(deleted=True)
    code = seeder.code(user)
    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))
    assert outcome.code == "invalid-account"
    assert seeder.codes_of(user.accountid) == 1


def test_username_in_another_appid_is_invalid_username(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account(appid="other-app")
    code = seeder.code(user)
    outcome = reset_password(processor, **password_payload(user.username, NEW_PASSWORD, code))
    assert outcome.code == "invalid-username"


@pytest.mark.parametrize(("payload", "code"), CHECK_ORDER)
def test_checks_run_in_the_dashboards_order(
    processor: CommandProcessor, payload: dict[str, Any], code: str
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
@pytest.mark.parametrize("value", [123456789, 1.5, ["password"], {"a": "b"}, True])
def test_wrong_type_gets_the_missing_code(
    processor: CommandProcessor, field: str, code: str, value: Any
) -> None:
    payload = password_payload("username", "password", "code")
    payload[field] = value
    assert reset_password(processor, **payload).code == code


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("username", "invalid-username"),
        ("new-password", "invalid-password"),
        ("secret-code", "invalid-secret-code"),
    ],
)
def test_text_that_is_not_valid_unicode_gets_the_missing_code(
    processor: CommandProcessor, seeder: Seeder, field: str, code: str
) -> None:
    """A lone surrogate (JSON "\\ud800") cannot be hashed; it must not become an error message."""
    user = seeder.account()
    payload = password_payload(user.username, "password", seeder.code(user))
    payload[field] = payload[field] + "\ud800"
    assert reset_password(processor, **payload).code == code


def test_emoji_password_counts_as_the_dashboard_counts_it(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    emoji_password = "\U0001f600" * 3  # six UTF-16 code units: long enough for the dashboard
    outcome = reset_password(
        processor, **password_payload(user.username, emoji_password, seeder.code(user))
    )
    assert outcome.status == "success"
    assert seeder.hasher.password_matches(
        emoji_password, seeder.load(user.accountid).password_hash or ""
    )


@pytest.mark.parametrize("requester", ["r" * 1025, "acct\ud800"])
def test_unusable_requester_counts_as_none_after_the_account_check(
    processor: CommandProcessor, seeder: Seeder, requester: str
) -> None:
    assert (
        reset_session_key(processor, accountid="acct_nobody", requester_accountid=requester).code
        == "invalid-accountid"
    )
    user = seeder.account()
    assert (
        reset_session_key(processor, accountid=user.accountid, requester_accountid=requester).code
        == "invalid-account"
    )


def test_underscore_names_and_unknown_fields_are_accepted(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    outcome = reset_password(
        processor,
        username=user.username,
        new_password=NEW_PASSWORD,
        secret_code=code,
        referrer="https://example.test",
    )
    assert outcome.status == "success"


def test_positional_arguments_are_invalid_payload(processor: CommandProcessor) -> None:
    assert reset_session_key(processor, "acct_x").code == "invalid-payload"


@pytest.mark.parametrize("command_id", [12, "", "x" * 201, ["id"]])
def test_unusable_command_id_is_invalid_payload(
    processor: CommandProcessor, command_id: Any
) -> None:
    outcome = reset_session_key(processor, accountid="acct_x", command_id=command_id)
    assert outcome.code == "invalid-payload"


@pytest.mark.parametrize("appid", [5, "", "a" * 201, ["test-app"]])
def test_unusable_appid_is_invalid_payload_and_not_echoed(
    processor: CommandProcessor, appid: Any
) -> None:
    outcome = reset_session_key(processor, accountid="acct_x", appid=appid)
    assert outcome.code == "invalid-payload"
    assert outcome.appid is None


# Idempotency, events and the cache.


def test_same_command_id_applies_once_and_replays_the_same_event(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    command_id = unique("cmd")
    payload = {"accountid": user.accountid, "requester_accountid": user.accountid}

    first = reset_session_key(processor, command_id=command_id, **payload)
    second = reset_session_key(processor, command_id=command_id, **payload)

    assert seeder.load(user.accountid).session_key_number == 2
    assert first == second
    events = stream_outcomes(redis_client, processor.events.stream)
    assert [event.event_id for event in events] == [first.event_id] * 2


def test_event_carries_the_contract_fields_and_no_secret(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    outcome = reset_password(
        processor, command_id="cmd-contract-" + unique("x"), appid="test-app",
        **password_payload(user.username, NEW_PASSWORD, code),
    )  # fmt: skip
    [(_, fields)] = cast(
        list[tuple[Any, dict[bytes, bytes]]], redis_client.xrange(processor.events.stream)
    )
    raw = event_json(fields)
    account = seeder.load(user.accountid)

    assert set(fields) == {b"event"}
    assert read_outcome(fields) == outcome
    assert set(outcome.model_dump()) == {
        "event_id", "command_id", "command", "status", "code", "appid", "accountid",
        "occurred_at", "schema_version",
    }  # fmt: skip
    assert outcome.command == "reset-account-password"
    assert outcome.appid == "test-app"
    assert json.loads(raw)["occurred_at"].endswith(("Z", "+00:00"))
    for secret in (NEW_PASSWORD, code, user.username, account.session_key, account.password_hash):
        assert secret
        assert secret not in raw


def test_success_removes_the_dashboard_cache_entry_and_failure_does_not(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user, other = seeder.account(), seeder.account()
    redis_client.set(user.accountid, "cached account")
    redis_client.set(other.accountid, "cached account")

    reset_session_key(processor, accountid=other.accountid, requester_accountid=user.accountid)
    reset_session_key(processor, accountid=user.accountid, requester_accountid=user.accountid)

    assert redis_client.exists(user.accountid) == 0
    assert redis_client.exists(other.accountid) == 1
    redis_client.delete(other.accountid)
