"""The pipeline on the in-memory parts: validate, apply once, record, publish.

The same behaviours as tests/integration/test_idempotency.py (and the pipeline's share of
test_rules.py), without a database or Redis: a replay gives the recorded event again, a
different request under a used command_id gets command-id-conflict and learns nothing, a
refused message is recorded as invalid-payload, and a rule failure changes nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from client.sealing import Binding, public_sealing_key, seal
from schemas import CommandOutcome, ExceptionCode, ResetAccountPassword, ResetSessionKey
from schemas.codes import CommandRejected
from tasks import handlers
from tasks.deps import RuleDeps
from tasks.pipeline import Answer
from tasks.ports import AccountRows, AttemptCounter, Handler, UnitOfWork, UnitsOfWork
from tests.support.in_memory import (
    InMemoryAttempts,
    InMemoryDatabase,
    InMemoryEvents,
    InMemoryUnitOfWork,
    InMemoryUnitsOfWork,
    RecordingObserver,
    UnitProcessor,
    deliver,
    password_payload,
    reset_password,
    revoke,
)
from tests.support.keys import TEST_SEALING_KEYS, TEST_SEALING_PUBLIC_KEY
from worker.db.unit_of_work import SqlUnitsOfWork
from worker.db.unit_of_work import UnitOfWork as SqlUnitOfWork
from worker.security.attempts import CodeAttempts
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.streams.publisher import EventStream

CONFLICT = ExceptionCode.COMMAND_ID_CONFLICT
NEW_PASSWORD = "brand-new-password"


def assert_names_nothing_of_the_first(refusal: CommandOutcome, first: CommandOutcome) -> None:
    assert refusal.code == CONFLICT
    assert refusal.status == "failure"
    assert refusal.accountid is None
    assert refusal.event_id != first.event_id
    assert refusal.command_id == first.command_id


def test_the_real_parts_and_the_in_memory_ones_have_the_same_interfaces() -> None:
    """mypy checks these assignments: each part satisfies the interface the pipeline reads."""
    units: list[type[UnitsOfWork]] = [SqlUnitsOfWork, InMemoryUnitsOfWork]
    unit: type[UnitOfWork] = SqlUnitOfWork
    counters: list[type[AttemptCounter]] = [CodeAttempts, InMemoryAttempts]
    publishers: list[type[EventStream | InMemoryEvents]] = [EventStream, InMemoryEvents]
    assert (len(units), unit, len(counters), len(publishers)) == (2, SqlUnitOfWork, 2, 2)


def test_a_command_is_applied_recorded_then_published_and_observed(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    user, _ = db.add_account(hasher)

    outcome = revoke(processor, user, command_id="cmd-1")

    recorded = db.recorded("test-app", "cmd-1")
    assert recorded is not None
    assert recorded.outcome == outcome
    assert recorded.fingerprint is not None
    assert recorded.published_at is not None  # marked once the event was out
    assert processor.events.published == [outcome]
    assert db.account(user).session_key_number == 2
    assert observer.named("command_processed") == [
        {"command": "reset-session-key", "outcome": "success"}
    ]
    assert observer.named("published") == [{"by": "task"}]
    assert all(unit.ended for unit in processor.units.opened)


def test_same_command_id_applies_once_and_replays_the_same_event(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    user, _ = db.add_account(hasher)
    first = revoke(processor, user, command_id="cmd-1")
    second = revoke(processor, user, command_id="cmd-1")

    assert first == second
    assert db.account(user).session_key_number == 2
    assert [e.event_id for e in processor.events.published] == [first.event_id] * 2
    assert len(observer.named("command_processed")) == 2
    assert db.commits == 1


def test_without_a_command_id_the_task_id_is_the_key(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher)
    payload = {"accountid": user, "requester_accountid": user}
    run = processor.run
    first = run(ResetSessionKey, handlers.reset_session_key, args=(), payload=payload, task_id="t")
    again = run(ResetSessionKey, handlers.reset_session_key, args=(), payload=payload, task_id="t")
    assert first.command_id == "t"
    assert again == first


def test_bobs_revocation_under_alices_command_id_is_refused_and_ends_nothing(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    alice, _ = db.add_account(hasher)
    bob, _ = db.add_account(hasher)
    first = revoke(processor, alice, command_id="alices")

    bobs = revoke(processor, bob, command_id="alices")
    resent = revoke(processor, alice, command_id="alices")
    own = revoke(processor, bob, command_id="bobs")

    assert_names_nothing_of_the_first(bobs, first)
    assert (bobs.command, bobs.appid) == ("reset-session-key", "test-app")
    assert alice not in bobs.model_dump_json()
    assert resent == first
    assert (own.status, own.accountid) == ("success", bob)
    assert db.account(bob).session_key_number == 2
    assert db.account(alice).session_key_number == 2
    recorded = db.recorded("test-app", "alices")
    assert recorded is not None
    assert recorded.outcome == first  # the refusal is not recorded
    events = [e.event_id for e in processor.events.published]
    assert events == [first.event_id, bobs.event_id, first.event_id, own.event_id]


def test_a_password_reset_resent_with_another_new_password_is_refused(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    payload = password_payload(username, NEW_PASSWORD, db.add_code(hasher, user))
    first = reset_password(processor, command_id="cmd", **payload)

    other = reset_password(processor, command_id="cmd", **{**payload, "new-password": "another"})
    resent = reset_password(processor, command_id="cmd", **payload)
    spelled = reset_password(
        processor,
        command_id="cmd",
        username=username,
        new_password=NEW_PASSWORD,
        secret_code=payload["secret-code"],
    )

    assert first.status == "success"
    assert_names_nothing_of_the_first(other, first)
    assert resent == first
    assert spelled == first  # aliases are the same request
    assert hasher.password_matches(NEW_PASSWORD, db.account(user).password_hash or "")


def test_a_command_id_taken_by_the_other_command_is_a_conflict(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    first = revoke(processor, user, command_id="cmd")
    second = reset_password(
        processor,
        command_id="cmd",
        **password_payload(username, NEW_PASSWORD, db.add_code(hasher, user)),
    )
    assert_names_nothing_of_the_first(second, first)
    assert (second.command, second.appid) == ("reset-account-password", "test-app")
    assert db.codes_of(user) == 1


def test_the_legacy_setting_answers_a_conflict_with_invalid_payload(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    legacy = dataclasses.replace(processor, conflict_code=ExceptionCode.INVALID_PAYLOAD)
    user, _ = db.add_account(hasher)
    other, _ = db.add_account(hasher)
    first = revoke(legacy, user, command_id="cmd")
    refusal = revoke(legacy, other, command_id="cmd")
    assert (refusal.code, refusal.accountid) == ("invalid-payload", None)
    assert refusal.event_id != first.event_id
    assert db.account(other).session_key_number == 1


def test_a_command_id_in_another_appid_is_another_command(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher)
    claims = [revoke(processor, user, command_id="cmd", appid=appid) for appid in ("other", 5)]
    real = revoke(processor, user, command_id="cmd")

    assert [c.code for c in claims] == ["invalid-accountid", "invalid-payload"]
    assert (real.status, real.appid) == ("success", "test-app")
    assert revoke(processor, user, command_id="cmd", appid="other") == claims[0]
    assert set(db.outcomes) == {("other", "cmd"), ("", "cmd"), ("test-app", "cmd")}


def test_positional_arguments_are_invalid_payload(processor: UnitProcessor) -> None:
    outcome = deliver(processor, ResetSessionKey, "acct_x")
    assert outcome.code == "invalid-payload"


@pytest.mark.parametrize("command_id", [12, "", "x" * 201, ["id"]])
def test_unusable_command_id_is_invalid_payload(processor: UnitProcessor, command_id: Any) -> None:
    outcome = deliver(processor, ResetSessionKey, accountid="acct_x", command_id=command_id)
    assert outcome.code == "invalid-payload"
    assert outcome.command_id.startswith("task-")  # recorded under the task id instead


@pytest.mark.parametrize("appid", [5, "", "a" * 201, ["test-app"]])
def test_unusable_appid_is_invalid_payload_and_not_echoed(
    processor: UnitProcessor, appid: Any
) -> None:
    outcome = deliver(processor, ResetSessionKey, accountid="acct_x", appid=appid)
    assert (outcome.code, outcome.appid) == ("invalid-payload", None)


def test_a_rule_failure_is_recorded_replayed_and_changes_nothing(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    user, _ = db.add_account(hasher)

    def changes_then_refuses(
        command: ResetSessionKey, uow: AccountRows, deps: RuleDeps[AttemptCounter]
    ) -> str:
        handlers.reset_session_key(command, uow, deps)
        raise CommandRejected(ExceptionCode.INVALID_ACCOUNT, accountid=command.accountid)

    payload = {"accountid": user, "requester_accountid": user, "command_id": "cmd"}
    outcomes = [
        processor.run(ResetSessionKey, changes_then_refuses, args=(), payload=payload, task_id="t")
        for _ in range(2)
    ]

    assert outcomes[0] == outcomes[1]
    assert (outcomes[0].code, outcomes[0].accountid) == ("invalid-account", user)
    assert db.account(user).session_key_number == 1  # rolled back
    recorded = db.recorded("test-app", "cmd")
    assert recorded is not None
    assert recorded.outcome == outcomes[0]
    assert observer.named("command_processed")[0]["outcome"] == "invalid-account"


def test_the_dashboard_metric_counts_a_reset_once_in_its_transaction(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    payload = password_payload(username, NEW_PASSWORD, db.add_code(hasher, user))
    reset_password(processor, command_id="cmd", **payload)
    reset_password(processor, command_id="cmd", **payload)  # a replay counts nothing
    revoke(processor, user)  # nor does the other command
    reset_password(processor, command_id="wrong", **{**payload, "secret-code": "wrong"})

    assert len(db.metrics) == 4
    assert {value for _, value in db.metrics.values()} == {1}
    assert any(metricid == "resetcodes-used/total" for metricid in db.metrics)


def test_the_event_carries_no_secret(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    code = db.add_code(hasher, user)
    outcome = reset_password(processor, **password_payload(username, NEW_PASSWORD, code))
    account = db.account(user)
    raw = outcome.model_dump_json()
    for secret in (NEW_PASSWORD, code, username, account.session_key, account.password_hash):
        assert secret
        assert secret not in raw


def racing(processor: UnitProcessor, payload: dict[str, Any]) -> Handler[ResetSessionKey]:
    """A handler that lets another delivery of `payload` commit first, as a second worker
    holding the same command_id would; then applies the rules itself."""

    def handler(command: ResetSessionKey, uow: AccountRows, deps: RuleDeps[AttemptCounter]) -> str:
        deliver(processor, ResetSessionKey, **payload)
        return handlers.reset_session_key(command, uow, deps)

    return handler


def test_losing_the_race_to_the_same_request_replays_the_winners_outcome(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, _ = db.add_account(hasher)
    payload = {"accountid": user, "requester_accountid": user, "command_id": "cmd"}

    loser = processor.run(
        ResetSessionKey, racing(processor, payload), args=(), payload=payload, task_id="t"
    )

    winner = db.recorded("test-app", "cmd")
    assert winner is not None
    assert loser == winner.outcome
    assert db.account(user).session_key_number == 2  # applied once: the loser rolled back


def test_losing_the_race_to_a_different_request_is_a_conflict(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    alice, _ = db.add_account(hasher)
    bob, _ = db.add_account(hasher)
    alices = {"accountid": alice, "requester_accountid": alice, "command_id": "cmd"}
    bobs = {"accountid": bob, "requester_accountid": bob, "command_id": "cmd"}

    loser = processor.run(
        ResetSessionKey, racing(processor, alices), args=(), payload=bobs, task_id="t"
    )

    winner = db.recorded("test-app", "cmd")
    assert winner is not None
    assert_names_nothing_of_the_first(loser, winner.outcome)
    assert db.account(bob).session_key_number == 1


def test_the_final_failure_path_gives_the_recorded_outcome_only_to_its_request(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    alice, _ = db.add_account(hasher)
    bob, _ = db.add_account(hasher)
    first = revoke(processor, alice, command_id="cmd")

    def answer(accountid: str, command_id: str) -> tuple[CommandOutcome, Answer] | None:
        payload = {"accountid": accountid, "requester_accountid": accountid,
                   "command_id": command_id}  # fmt: skip
        return processor.recorded_answer(ResetSessionKey, args=(), payload=payload, task_id="t")

    assert answer(alice, "cmd") == (first, Answer.REPLAYED)
    bobs = answer(bob, "cmd")
    assert bobs is not None
    assert bobs[1] is Answer.REFUSED
    assert_names_nothing_of_the_first(bobs[0], first)
    assert answer(bob, "another") is None


def test_the_final_failure_path_says_nothing_when_the_record_cannot_be_read(
    processor: UnitProcessor,
) -> None:
    class Unreadable(InMemoryUnitsOfWork):
        def __call__(self) -> InMemoryUnitOfWork:
            raise ConnectionError("database out of reach")

    broken = dataclasses.replace(processor, units=Unreadable(processor.units.database))
    payload = {"accountid": "acct_x", "requester_accountid": "acct_x"}
    assert broken.recorded_answer(ResetSessionKey, args=(), payload=payload, task_id="t") is None


def test_rows_recorded_before_fingerprints_replay_to_their_command(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    old = CommandOutcome.success(
        command_id="old", command=ResetSessionKey.name, appid="test-app", accountid=user
    )
    with processor.units() as uow:
        uow.record_outcome(old, scope="test-app", fingerprint=None)
        uow.commit()

    replayed = revoke(processor, user, command_id="old")
    other = reset_password(
        processor,
        command_id="old",
        **password_payload(username, NEW_PASSWORD, db.add_code(hasher, user)),
    )

    assert replayed == old
    assert db.account(user).session_key_number == 1
    assert_names_nothing_of_the_first(other, old)


# Sealed fields: refused before the rules, and a sealed field counts as its token.


@pytest.fixture
def sealing(processor: UnitProcessor) -> UnitProcessor:
    sealed = SealedFields(keys=TEST_SEALING_KEYS, required=True, max_field_length=1024)
    return dataclasses.replace(processor, sealed=sealed)


def sealed(field: str, text: str, command_id: str) -> dict[str, str]:
    public = public_sealing_key(TEST_SEALING_PUBLIC_KEY, variable="the test's public key")
    binding = Binding.of(command=ResetAccountPassword.name, field=field, command_id=command_id)
    return {"sealed": seal(text, key=public, binding=binding)}


def test_a_plaintext_secret_where_sealing_is_required_is_invalid_payload(
    sealing: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    code = db.add_code(hasher, user)
    outcome = reset_password(sealing, **password_payload(username, NEW_PASSWORD, code))
    assert outcome.code == "invalid-payload"
    assert db.codes_of(user) == 1


def test_sealed_fields_open_and_a_re_sealed_guess_under_a_recorded_id_learns_nothing(
    sealing: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    user, username = db.add_account(hasher)
    code = db.add_code(hasher, user)
    fields = {
        "username": sealed("username", username, "cmd"),
        "secret-code": sealed("secret-code", code, "cmd"),
        "new-password": sealed("new-password", NEW_PASSWORD, "cmd"),
    }
    first = reset_password(sealing, command_id="cmd", **fields)
    resent = reset_password(sealing, command_id="cmd", **fields)
    resealed = reset_password(
        sealing, command_id="cmd", **{**fields, "secret-code": sealed("secret-code", code, "cmd")}
    )
    elsewhere = reset_password(
        sealing,
        command_id="other",
        **{**fields, "new-password": sealed("new-password", NEW_PASSWORD, "cmd")},
    )

    assert first.status == "success"
    assert resent == first
    assert_names_nothing_of_the_first(resealed, first)
    assert elsewhere.code == "invalid-payload"  # sealed for another command_id
