"""Finding 3: idempotency keys bound to their request, and scoped per appid.

A command_id's recorded outcome is replayed only to the request it was recorded for (the same
fingerprint); any other request under it is refused with `command-id-conflict`, unrecorded,
and learns nothing of the first. The record is keyed by (appid, command_id). Through a real
worker process: tests/e2e/test_idempotency_on_a_worker.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import redis
import sqlalchemy as sa
from alembic import command as alembic_command

from client.events import event_json, stream_outcomes
from client.sealing import Binding, public_sealing_key, seal
from schemas import CommandOutcome, ExceptionCode, ResetAccountPassword, ResetSessionKey
from tasks.pipeline import Answer, CommandProcessor
from tests.support import databases
from tests.support.commands import (
    CONFLICT,
    NEW_PASSWORD,
    assert_names_nothing_of_the_first,
    in_process_processor,
    password_payload,
    reset_password,
    reset_session_key,
)
from tests.support.databases import LOCK_WAIT_DEADLINE_S, wait_until_waiting
from tests.support.ids import unique
from tests.support.keys import TEST_HASH_KEY, TEST_SEALING_KEYS, TEST_SEALING_PUBLIC_KEY
from tests.support.seeding import Seeder
from worker.bootstrap import request_fingerprints, warn_of_weak_settings
from worker.db.engine import create_db_engine
from worker.db.migrate import alembic_config, upgrade
from worker.db.models import OutcomeRecord
from worker.db.unit_of_work import UnitOfWork
from worker.security.fingerprints import RequestFingerprints
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.settings import Settings
from worker.streams.publisher import EventStream

EVENT_DEADLINE_S = 60.0


def revoke(processor: CommandProcessor, accountid: str, **more: Any) -> CommandOutcome:
    """An account ends its own sessions."""
    return reset_session_key(processor, accountid=accountid, requester_accountid=accountid, **more)


def test_finding_3_bobs_revocation_under_alices_command_id_is_refused_and_ends_nothing(
    processor: CommandProcessor, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Finding 3: Bob's reset-session-key for Bob, sent under Alice's command_id, got Alice's
    recorded success, and Bob's sessions never ended. Now: command-id-conflict, naming Bob's
    own command and appid and nothing of Alice's; Bob's command under a new id applies; a
    resend of Alice's exact request still replays her event."""
    alice, bob = seeder.account(), seeder.account()
    alices_id = unique("cmd")
    first = revoke(processor, alice.accountid, command_id=alices_id)

    bobs = revoke(processor, bob.accountid, command_id=alices_id)

    assert first.status == "success"
    assert_names_nothing_of_the_first(bobs, first)
    assert (bobs.command, bobs.appid) == ("reset-session-key", "test-app")
    assert seeder.load(bob.accountid).session_key_number == 1  # his sessions not ended by it
    assert seeder.load(alice.accountid).session_key_number == 2
    entries = cast(list[tuple[Any, dict[bytes, bytes]]], redis_client.xrange(
        processor.events.stream))  # fmt: skip
    assert alice.accountid not in event_json(entries[1][1])

    resent = revoke(processor, alice.accountid, command_id=alices_id)
    own = revoke(processor, bob.accountid, command_id=unique("cmd"))

    assert resent == first  # the same event, event_id and all: the first outcome stands
    assert (own.status, own.accountid) == ("success", bob.accountid)
    assert seeder.load(bob.accountid).session_key_number == 2
    assert seeder.load(alice.accountid).session_key_number == 2
    events = stream_outcomes(redis_client, processor.events.stream)
    assert [e.event_id for e in events] == [first.event_id, bobs.event_id, first.event_id,
                                            own.event_id]  # fmt: skip


def test_a_password_reset_resent_with_another_new_password_is_refused(
    processor: CommandProcessor, seeder: Seeder, hasher: Hasher
) -> None:
    """Finding 3, the password: the same username and reset code under a used command_id,
    with a different new-password, got the recorded success; the new password never set."""
    user = seeder.account()
    command_id = unique("cmd")
    payload = password_payload(user.username, NEW_PASSWORD, seeder.code(user))
    first = reset_password(processor, command_id=command_id, **payload)

    other = reset_password(processor, command_id=command_id,
                           **{**payload, "new-password": "another-password"})  # fmt: skip
    resent = reset_password(processor, command_id=command_id, **payload)

    assert first.status == "success"
    assert_names_nothing_of_the_first(other, first)
    assert resent == first
    stored = seeder.load(user.accountid).password_hash or ""
    assert hasher.password_matches(NEW_PASSWORD, stored)


def test_a_resend_spelled_differently_or_with_the_same_tokens_is_the_same_request(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Aliases are normalised (`secret_code` is `secret-code`), and a sealed field counts as
    its token: the same message sent again replays, whatever it spells; a field sealed afresh
    (a new JWE) is a different request."""
    processor = dataclasses.replace(
        processor,
        sealed=SealedFields(keys=TEST_SEALING_KEYS, required=False, max_field_length=1024),
    )
    user = seeder.account()
    command_id, code = unique("cmd"), seeder.code(user)
    public = public_sealing_key(TEST_SEALING_PUBLIC_KEY, variable="the test's public key")

    def sealed(field: str, text: str) -> dict[str, str]:
        binding = Binding.of(command=ResetAccountPassword.name, field=field, command_id=command_id)
        return {"sealed": seal(text, key=public, binding=binding)}

    tokens = {"secret-code": sealed("secret-code", code),
              "new-password": sealed("new-password", NEW_PASSWORD)}  # fmt: skip
    first = reset_password(processor, command_id=command_id, username=user.username, **tokens)
    resent = reset_password(processor, command_id=command_id, username=user.username,
                            secret_code=tokens["secret-code"],
                            new_password=tokens["new-password"])  # fmt: skip
    again = {**tokens, "new-password": sealed("new-password", NEW_PASSWORD)}
    resealed = reset_password(processor, command_id=command_id, username=user.username, **again)
    assert first.status == "success"
    assert resent == first
    assert_names_nothing_of_the_first(resealed, first)


def test_review_finding_re_sealed_guesses_under_a_recorded_id_learn_nothing(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """The adversarial review of this issue: fingerprints over the opened plaintext made
    replay-versus-conflict an oracle. The victim's reset was refused (password too short), its
    code left unused; re-sealing each guess of the code under the victim's command_id (any
    producer can seal) found the code in 118 probes at 274 a second, no attempt counted, and the
    code then reset the password. Now every re-sealed guess, the right one included, is a
    conflict that names nothing of the first."""
    processor = dataclasses.replace(
        processor,
        sealed=SealedFields(keys=TEST_SEALING_KEYS, required=True, max_field_length=1024),
    )
    user = seeder.account()
    command_id, code = unique("victim"), seeder.code(user)
    public = public_sealing_key(TEST_SEALING_PUBLIC_KEY, variable="the test's public key")

    def sealed(field: str, text: str) -> dict[str, str]:
        binding = Binding.of(command=ResetAccountPassword.name, field=field, command_id=command_id)
        return {"sealed": seal(text, key=public, binding=binding)}

    victim = {"username": sealed("username", user.username),
              "secret-code": sealed("secret-code", code),
              "new-password": sealed("new-password", "short")}  # fmt: skip
    first = reset_password(processor, command_id=command_id, **victim)
    assert first.code == "invalid-password-length"
    guesses = [f"wrong-{i}" for i in range(20)] + [code]
    answers = [
        reset_password(
            processor,
            command_id=command_id,
            **{**victim, "secret-code": sealed("secret-code", guess)},
        )
        for guess in guesses
    ]
    for answer in answers:
        assert_names_nothing_of_the_first(answer, first)
    assert {answer.code for answer in answers} == {"command-id-conflict"}
    assert seeder.codes_of(user.accountid) == 1


def test_a_pre_claimed_command_id_in_another_appid_does_not_block_a_real_command(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Finding 3: keys were global, so an id claimed anywhere blocked the real command. Now
    the same command_id in two appids is two commands; commands of an unusable appid claim
    nothing in any real one."""
    user = seeder.account()
    command_id = unique("cmd")
    claims = [
        revoke(processor, user.accountid, command_id=command_id, appid=appid)
        for appid in ("another-app", 5)
    ]
    real = revoke(processor, user.accountid, command_id=command_id)

    assert [c.code for c in claims] == ["invalid-accountid", "invalid-payload"]
    assert (real.status, real.appid) == ("success", "test-app")
    assert seeder.load(user.accountid).session_key_number == 2
    # Each scope keeps its own outcome.
    assert (
        revoke(processor, user.accountid, command_id=command_id, appid="another-app") == claims[0]
    )


def test_a_command_id_taken_by_the_other_command_is_a_conflict(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Before: `invalid-payload`. Now `command-id-conflict`, like any other request."""
    user = seeder.account()
    command_id = unique("cmd")
    first = revoke(processor, user.accountid, command_id=command_id)
    second = reset_password(
        processor, command_id=command_id,
        **password_payload(user.username, NEW_PASSWORD, seeder.code(user)),
    )  # fmt: skip

    assert first.status == "success"
    assert_names_nothing_of_the_first(second, first)
    assert (second.command, second.appid) == ("reset-account-password", "test-app")
    assert seeder.codes_of(user.accountid) == 1  # nothing applied
    assert revoke(processor, user.accountid, command_id=command_id) == first


def test_the_legacy_setting_answers_a_conflict_with_invalid_payload(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """COMMAND_ID_CONFLICT_CODE=invalid-payload: the answer consumers got before the new code,
    for the other command's id as before, and now for every different request."""
    processor = dataclasses.replace(processor, conflict_code=ExceptionCode.INVALID_PAYLOAD)
    user, other = seeder.account(), seeder.account()
    command_id = unique("cmd")
    first = revoke(processor, user.accountid, command_id=command_id)
    other_command = reset_password(
        processor, command_id=command_id,
        **password_payload(user.username, NEW_PASSWORD, seeder.code(user)),
    )  # fmt: skip
    other_fields = revoke(processor, other.accountid, command_id=command_id)

    for refusal in (other_command, other_fields):
        assert (refusal.code, refusal.accountid) == ("invalid-payload", None)
        assert refusal.event_id != first.event_id
    assert seeder.load(other.accountid).session_key_number == 1
    assert revoke(processor, user.accountid, command_id=command_id) == first


def test_the_setting_reaches_the_processor_and_refuses_other_codes() -> None:
    from worker.bootstrap import build_runtime

    legacy = Settings(command_id_conflict_code="invalid-payload", database_url="sqlite://")
    runtime = build_runtime(legacy)
    assert runtime.processor.conflict_code is ExceptionCode.INVALID_PAYLOAD
    runtime.engine.dispose()
    assert Settings().command_id_conflict_code == CONFLICT
    with pytest.raises(ValueError, match="command_id_conflict_code"):
        Settings(command_id_conflict_code="internal-error")


def test_a_request_whose_sealed_fields_do_not_open_learns_nothing(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Alice's password reset was sealed; Bob copies her command_id with values sealed for
    somewhere else (they do not open): a different request, refused, whatever Alice sent."""
    processor = dataclasses.replace(
        processor,
        sealed=SealedFields(keys=TEST_SEALING_KEYS, required=False, max_field_length=1024),
    )
    user = seeder.account()
    command_id = unique("cmd")
    payload = password_payload(user.username, NEW_PASSWORD, seeder.code(user))
    first = reset_password(processor, command_id=command_id, **payload)
    public = public_sealing_key(TEST_SEALING_PUBLIC_KEY, variable="the test's public key")
    elsewhere = Binding.of(command=ResetAccountPassword.name, field="new-password",
                           command_id=unique("another"))  # fmt: skip
    cut = {"sealed": seal(NEW_PASSWORD, key=public, binding=elsewhere)}

    refused = reset_password(processor, command_id=command_id, **{**payload, "new-password": cut})

    assert first.status == "success"
    assert_names_nothing_of_the_first(refused, first)


def test_the_final_failure_path_gives_the_recorded_outcome_only_to_its_request(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """What `on_failure` publishes when a delivery fails for good: it used to find the outcome
    by command_id alone, so Bob's failed request under Alice's id published her success."""
    alice, bob = seeder.account(), seeder.account()
    command_id = unique("cmd")
    first = revoke(processor, alice.accountid, command_id=command_id)

    def answer(accountid: str, command_id: str) -> tuple[CommandOutcome, Answer] | None:
        payload = {"accountid": accountid, "requester_accountid": accountid,
                   "command_id": command_id}  # fmt: skip
        return processor.recorded_answer(
            ResetSessionKey, args=(), payload=payload, task_id=unique("task")
        )

    assert answer(alice.accountid, command_id) == (first, Answer.REPLAYED)
    bobs = answer(bob.accountid, command_id)
    assert bobs is not None
    assert bobs[1] is Answer.REFUSED
    assert_names_nothing_of_the_first(bobs[0], first)
    assert answer(bob.accountid, unique("cmd")) is None  # nothing recorded: dead-lettered


def test_rows_recorded_before_fingerprints_replay_as_before(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """A row of revision 0002 has no fingerprint: any request of its command replays it (as
    then); the other command's is a conflict."""
    user = seeder.account()
    old = CommandOutcome.success(command_id=unique("old"), command=ResetSessionKey.name,
                                 appid="test-app", accountid=user.accountid)  # fmt: skip
    with UnitOfWork(processor.units.sessions) as uow:
        uow.record_outcome(old, scope="test-app", fingerprint=None)
        uow.commit()

    replayed = revoke(processor, user.accountid, command_id=old.command_id)
    other = reset_password(processor, command_id=old.command_id,
                           **password_payload(user.username, NEW_PASSWORD, "code"))  # fmt: skip

    assert replayed == old
    assert seeder.load(user.accountid).session_key_number == 1
    assert_names_nothing_of_the_first(other, old)


def test_a_racing_different_request_gets_the_conflict_not_the_winners_outcome(
    server_database_url: str,
    hasher: Hasher,
    events_stream: EventStream,
    redis_client: redis.Redis,
) -> None:
    """Two different requests under one command_id pass the "already recorded?" check at once
    (both wait on the account's lock); the one that loses on the primary key used to replay
    the winner's outcome. Now the loser is refused."""
    seeder = Seeder(server_database_url, hasher)
    alice, bob = seeder.account(), seeder.account()
    engine = create_db_engine(server_database_url, pool_size=4)
    processor = in_process_processor(engine, hasher, events_stream, redis_client)
    command_id = unique("cmd")
    start = threading.Barrier(2, timeout=LOCK_WAIT_DEADLINE_S)

    def deliver(requester: str) -> CommandOutcome:
        start.wait()
        return reset_session_key(processor, accountid=alice.accountid,
                                 requester_accountid=requester, command_id=command_id)  # fmt: skip

    with engine.connect() as holder, ThreadPoolExecutor(max_workers=2) as pool:
        transaction = holder.begin()
        holder.execute(
            sa.text("SELECT 1 FROM accounts WHERE accountid = :id FOR UPDATE"),
            {"id": alice.accountid},
        )
        deliveries = [pool.submit(deliver, who) for who in (alice.accountid, bob.accountid)]
        wait_until_waiting(engine, 2)
        transaction.commit()
        outcomes = [delivery.result(timeout=LOCK_WAIT_DEADLINE_S) for delivery in deliveries]

    codes = Counter(o.code for o in outcomes)
    assert codes[ExceptionCode.COMMAND_ID_CONFLICT] == 1, outcomes
    [winner] = [o for o in outcomes if o.code != CONFLICT]
    [loser] = [o for o in outcomes if o.code == CONFLICT]
    assert_names_nothing_of_the_first(loser, winner)
    with UnitOfWork(processor.units.sessions) as uow:
        recorded = uow.recorded_outcome(scope="test-app", command_id=command_id)
    assert recorded is not None
    assert recorded.outcome == winner
    engine.dispose()
    seeder.engine.dispose()


def test_unkeyed_without_an_idempotency_key_leaves_secrets_out_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stock dashboard has no key: no fast hash of a password is stored, and the worker
    warns once at start. IDEMPOTENCY_KEY brings the secrets in."""
    unkeyed = Settings(hash_mode="unkeyed")
    keyed = Settings(hash_mode="unkeyed", idempotency_key="i" * 16)
    request = {"username": "alice-name", "secret-code": "code-1", "new-password": "first-pw"}
    other = {**request, "new-password": "second-pw"}

    def fingerprints(settings: Settings) -> set[str]:
        of = request_fingerprints(settings).of
        return {
            of(ResetAccountPassword, command="reset-account-password", appid="a", fields=fields,
               positional=0)
            for fields in (request, other)
        }  # fmt: skip

    assert len(fingerprints(unkeyed)) == 1
    assert len(fingerprints(keyed)) == 2
    with caplog.at_level("WARNING", logger="worker.bootstrap"):
        warn_of_weak_settings(unkeyed)
        warned = caplog.text
        caplog.clear()
        warn_of_weak_settings(keyed)
    assert "ACCOUNT_RESET_IDEMPOTENCY_KEY" in warned
    assert "IDEMPOTENCY_KEY" not in caplog.text
    with pytest.raises(ValueError, match="ACCOUNT_RESET_IDEMPOTENCY_KEY"):
        Settings(idempotency_key="short")


def test_the_fingerprint_key_is_derived_and_never_the_hash_key() -> None:
    fields = {"accountid": "acct_1", "requester_accountid": "acct_1"}
    fingerprint = RequestFingerprints.keyed(TEST_HASH_KEY).of(
        ResetSessionKey, command="reset-session-key", appid="a", fields=fields,
        positional=0,
    )  # fmt: skip
    assert len(fingerprint) == 64
    assert TEST_HASH_KEY not in repr(RequestFingerprints.keyed(TEST_HASH_KEY))
    # Another command, appid or command_id-free field set is another request.
    assert fingerprint != RequestFingerprints.keyed(TEST_HASH_KEY).of(
        ResetSessionKey, command="reset-session-key", appid="b", fields=fields,
        positional=0,
    )  # fmt: skip


@pytest.mark.parametrize("model", [ResetSessionKey, ResetAccountPassword])
def test_every_field_the_command_declares_but_command_id_is_in_the_fingerprint(
    model: type[ResetSessionKey] | type[ResetAccountPassword],
) -> None:
    """Fields added to a command later (`source`) are covered without a change here."""
    of = RequestFingerprints.keyed(TEST_HASH_KEY).of
    names = [name for name in model.model_fields if name not in ("appid", "command_id")]
    fields = {name: f"{name}-1" for name in names}

    def fingerprint(**changed: Any) -> str:
        return of(model, command=model.name, appid="a", fields={**fields, **changed},
                  positional=0)  # fmt: skip

    assert fingerprint(command_id="another") == fingerprint()
    for name in names:
        assert fingerprint(**{name: f"{name}-2"}) != fingerprint(), name
    if model is ResetAccountPassword:  # one field, either spelling
        spelled = {**fields, "secret-code": fields["secret_code"]}
        del spelled["secret_code"]
        assert of(model, command=model.name, appid="a", fields=spelled,
                  positional=0) == fingerprint()  # fmt: skip


# The migration, on a table with rows.

OLD_ROWS = [
    ("c-1", "app-1"),  # recorded in an appid
    ("c-2", None),  # an invalid-payload with an unusable appid
]


def old_row(command_id: str, appid: str | None) -> dict[str, Any]:
    outcome = CommandOutcome.failure(command_id=command_id, command=ResetSessionKey.name,
                                     code=ExceptionCode.INVALID_ACCOUNTID, appid=appid)  # fmt: skip
    return {
        "command_id": command_id, "event_id": outcome.event_id, "command": outcome.command,
        "status": "failure", "code": "invalid-accountid", "appid": appid,
        "event": outcome.model_dump_json(), "recorded_at": outcome.occurred_at,
    }  # fmt: skip


@pytest.mark.parametrize("fresh_database_url", databases.BACKENDS, indirect=True)
def test_migration_0003_keys_existing_outcomes_by_appid(fresh_database_url: str) -> None:
    upgrade(fresh_database_url, "0002")
    engine = create_db_engine(fresh_database_url)
    old_table = sa.table(
        "account_reset_outcomes",
        *(sa.column(name) for name in old_row("x", None)),
    )
    with engine.begin() as connection:
        connection.execute(sa.insert(old_table), [old_row(*row) for row in OLD_ROWS])

    upgrade(fresh_database_url)

    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("account_reset_outcomes")["constrained_columns"] == [
        "scope", "command_id",
    ]  # fmt: skip
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(OutcomeRecord.scope, OutcomeRecord.command_id, OutcomeRecord.fingerprint)
            .order_by(OutcomeRecord.command_id)
        ).all()  # fmt: skip
    assert [tuple(row) for row in rows] == [("app-1", "c-1", None), ("", "c-2", None)]
    # The same command_id in another appid is another row now.
    with engine.begin() as connection:
        connection.execute(sa.insert(OutcomeRecord), [{**old_row("c-1", "app-2"),
                                                       "scope": "app-2"}])  # fmt: skip
    with pytest.raises(RuntimeError, match="several appids"):
        alembic_command.downgrade(alembic_config(fresh_database_url), "0002")
    with engine.begin() as connection:
        connection.execute(sa.delete(OutcomeRecord).where(OutcomeRecord.scope == "app-2"))
    alembic_command.downgrade(alembic_config(fresh_database_url), "0002")
    assert sa.inspect(engine).get_pk_constraint("account_reset_outcomes")[
        "constrained_columns"] == ["command_id"]  # fmt: skip
    upgrade(fresh_database_url)
    engine.dispose()


def test_the_client_resends_the_tokens_it_sent_first(redis_url: str) -> None:
    """A sealed field counts as its token, so the client's resend under the same command_id
    carries the very tokens of the first send (the worker replays its outcome); a new command
    gets new ones."""
    from client import AccountResetClient, ClientSettings

    queue = unique("account-reset-test")
    settings = ClientSettings(
        broker_url=redis_url, queue=queue, sealing_public_key=TEST_SEALING_PUBLIC_KEY
    )
    broker = redis.Redis.from_url(redis_url)
    secrets = {"username": "resend-user", "secret_code": "resend-code",
               "new_password": "resend-password"}  # fmt: skip
    with AccountResetClient(settings) as client:
        command_id = client.reset_account_password(**secrets)
        client.reset_account_password(**secrets, command_id=command_id)
        client.reset_account_password(**secrets)
    entries = [cast(bytes, broker.rpop(queue)) for _ in range(3)]
    sent = [json.loads(base64.b64decode(json.loads(entry)["body"]))[1] for entry in entries]
    broker.delete(queue)
    assert sent[0] == sent[1]
    assert sent[0]["command_id"] == command_id
    assert sent[2]["new-password"] != sent[0]["new-password"]
