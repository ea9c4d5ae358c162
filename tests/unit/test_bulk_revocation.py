"""reset-session-keys on the in-memory parts (issue 15, finding 3: bulk revocation as a command).

A listed chunk ends the sessions of its live accounts in one transaction and names them in its
event; an every_account run goes chunk after chunk, each resuming after the last accountid of the
one before; a replayed chunk changes nothing and its event is the recorded one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.bulk import CHUNK_BYTES, chunk_payloads
from schemas import ExceptionCode, ResetSessionKeys
from schemas.commands import MAX_BULK_ACCOUNTS, next_chunk
from schemas.events import BulkChunk
from tests.support.in_memory import InMemoryDatabase, RecordingObserver, UnitProcessor, deliver
from worker.security.hashing import Hasher


def bulk(processor: UnitProcessor, **payload: Any) -> Any:
    return deliver(processor, ResetSessionKeys, **payload)


def numbers(db: InMemoryDatabase, accountids: list[str]) -> list[int | None]:
    return [db.account(accountid).session_key_number for accountid in accountids]


def test_a_listed_chunk_ends_every_live_account_s_sessions_and_names_them(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, observer: RecordingObserver
) -> None:
    live = sorted(db.add_account(hasher)[0] for _ in range(3))
    deleted, _ = db.add_account(hasher, deleted=True)
    elsewhere, _ = db.add_account(hasher, appid="other-app")
    keys = {accountid: db.account(accountid).session_key for accountid in live}

    outcome = bulk(
        processor, command_id="run-1", accountids=[*live, deleted, elsewhere, "acct_missing"]
    )

    assert outcome.status == "success"
    assert outcome.accountid is None
    assert outcome.bulk == BulkChunk(
        bulk_id="run-1", chunk=0, accountids=live,
        not_reset=[deleted, elsewhere, "acct_missing"], reset_so_far=3, done=True,
    )  # fmt: skip
    assert numbers(db, live) == [2, 2, 2]
    assert all(db.account(accountid).session_key != keys[accountid] for accountid in live)
    assert numbers(db, [deleted, elsewhere]) == [1, 1]
    assert observer.named("bulk_reset") == [{"accounts": 3}]


def test_a_replayed_chunk_changes_nothing_and_answers_with_its_recorded_event(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    accountids = [db.add_account(hasher)[0] for _ in range(2)]
    first = bulk(processor, command_id="run-2", accountids=accountids)
    again = bulk(processor, command_id="run-2", accountids=accountids)
    assert again == first
    assert numbers(db, accountids) == [2, 2]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"accountids": []},
        {"accountids": ["a", "a"]},
        {"accountids": ["a", 7]},
        {"accountids": ["x" * 65]},
        {"accountids": [f"acct_{n}" for n in range(MAX_BULK_ACCOUNTS + 1)]},
        {"accountids": ["a"], "every_account": True},
        {"every_account": "yes"},
        {"every_account": True, "chunk": 10**10},
        {"every_account": True, "bulk_id": "r" * 189},
    ],
)
def test_a_chunk_that_names_no_usable_accounts_or_cannot_number_its_run_is_refused(
    processor: UnitProcessor, fields: dict[str, Any]
) -> None:
    outcome = bulk(processor, command_id="run-bad", **fields)
    assert outcome.code in (ExceptionCode.INVALID_ACCOUNTID, ExceptionCode.INVALID_PAYLOAD)
    assert outcome.bulk is None


def test_an_every_account_run_goes_chunk_by_chunk_and_resets_each_account_once(
    hasher: Hasher, observer: RecordingObserver
) -> None:
    """Seven accounts in chunks of three: messages #0, #1, #2 reset 3, 3 and 1, the last one
    says done; replaying #1 (a redelivery after a crash) changes nothing."""
    from dataclasses import replace

    from tests.support.in_memory import in_memory_processor

    processor = in_memory_processor(hasher, observer, fingerprint_key="k" * 32)
    processor = replace(processor, deps=replace(processor.deps, bulk_chunk=3))
    db = processor.units.database
    accountids = sorted(db.add_account(hasher)[0] for _ in range(7))
    db.add_account(hasher, deleted=True)

    payload: dict[str, Any] | None = {"command_id": "run-3", "every_account": True}
    chunks: list[BulkChunk] = []
    while payload is not None:
        outcome = bulk(processor, **payload)
        assert outcome.bulk is not None
        chunks.append(outcome.bulk)
        if outcome.bulk.chunk == 1:
            assert bulk(processor, **payload) == outcome
        payload = next_chunk(payload, outcome.bulk, appid="test-app")

    assert [len(chunk.accountids) for chunk in chunks] == [3, 3, 1]
    assert [chunk.reset_so_far for chunk in chunks] == [3, 6, 7]
    assert [chunk.done for chunk in chunks] == [False, False, True]
    assert [accountid for chunk in chunks for accountid in chunk.accountids] == accountids
    assert numbers(db, accountids) == [2] * 7


def test_a_run_whose_next_command_ids_would_be_too_long_is_refused_at_once(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher
) -> None:
    """A 200-character command_id is a valid key, but `<it>#1` is not: the run is refused
    before it resets anything, not stopped after its first chunk."""
    accountid, _ = db.add_account(hasher)
    outcome = bulk(processor, command_id="c" * 200, every_account=True)
    assert outcome.code == ExceptionCode.INVALID_PAYLOAD
    assert db.account(accountid).session_key_number == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    ["accountids", "every_account", "chunk", "after", "reset_before", "bulk_id", "appid",
     "command_id", "requested_by"]
)  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.dictionaries(FIELDS, JSON | st.lists(st.text(max_size=70), max_size=4)))
def test_any_payload_gets_an_outcome_and_touches_no_other_appid(
    processor: UnitProcessor, db: InMemoryDatabase, hasher: Hasher, payload: dict[str, Any]
) -> None:
    """The attacker's view: whatever the kwargs of a reset-session-keys message, the worker
    answers it (success or a code, never an exception) and ends no session outside its appid:
    an account of another appid, whose accountid the payload may name, keeps its key."""
    if not db.accounts:
        db.add_account(hasher, appid="other-app")
    (elsewhere,) = db.accounts
    payload = {**payload, "appid": "test-app"} if "appid" not in payload else payload
    if payload.get("appid") == "other-app":
        payload["appid"] = "test-app"
    if isinstance(payload.get("accountids"), list):
        payload["accountids"] = [*payload["accountids"], elsewhere][:MAX_BULK_ACCOUNTS]
    outcome = bulk(processor, **payload)
    assert outcome.status in ("success", "failure")
    assert db.account(elsewhere).session_key_number == 1


def test_a_listed_run_of_long_accountids_is_cut_to_fit_a_message() -> None:
    """1,000 accountids of 64 characters are 67 KB of JSON, over MAX_MESSAGE_BYTES (64 KiB)
    once base64-encoded: the client cuts them into messages of at most 40 KB of ids, and a
    run of dashboard-sized ids into messages of 1,000."""
    long_ids = [f"acct_{n:059d}" for n in range(1500)]
    chunks = [
        payload["accountids"]
        for _, payload in chunk_payloads(long_ids, bulk_id="r", requested_by=None)
    ]
    assert [len(chunk) for chunk in chunks] == [588, 588, 324]  # 68 bytes an id
    assert all(len(json.dumps(chunk)) <= CHUNK_BYTES for chunk in chunks)
    short = [f"acct_{n:016x}" for n in range(2500)]
    sent = list(chunk_payloads([*short, short[0]], bulk_id="r", requested_by="ops"))
    assert [len(payload["accountids"]) for _, payload in sent] == [1000, 1000, 500]
    assert [command_id for command_id, _ in sent] == ["r#0", "r#1", "r#2"]
    assert {payload["requested_by"] for _, payload in sent} == {"ops"}
