"""The worker's command path in the test's own process, and one delivery of each command."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa

from schemas import CommandLimits, CommandOutcome, ResetAccountPassword, ResetSessionKey
from tasks import handlers
from tasks.deps import RuleDeps
from tasks.pipeline import CommandProcessor
from tests.support.ids import unique
from tests.support.keys import TEST_HASH_KEY
from tests.support.payloads import password_payload as password_payload
from worker.db.engine import session_factory
from worker.db.unit_of_work import SqlUnitsOfWork
from worker.security.attempts import CodeAttempts, counts_naming_key
from worker.security.fingerprints import RequestFingerprints
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.cache import DashboardCache
from worker.streams.publisher import EventStream


def in_process_processor(
    engine: sa.Engine,
    hasher: Hasher,
    events: EventStream,
    cache: redis.Redis,
    *,
    sealed: SealedFields | None = None,
    code_ttl: timedelta | None = None,
) -> CommandProcessor:
    attempts = CodeAttempts(
        client=cache,
        key_prefix=unique("code-attempts"),
        max_attempts=5,
        window_s=900,
        naming_key=counts_naming_key(TEST_HASH_KEY),
    )
    return CommandProcessor(
        units=SqlUnitsOfWork(session_factory(engine)),
        deps=RuleDeps(hasher=hasher, attempts=attempts, code_ttl=code_ttl),
        sealed=sealed or SealedFields(keys=None, required=False, max_field_length=1024),
        events=events,
        dashboard=DashboardBookkeeping(cache=DashboardCache(cache)),
        limits=CommandLimits(),
        default_appid="test-app",
        fingerprints=RequestFingerprints.keyed(TEST_HASH_KEY),
    )


NEW_PASSWORD = "brand-new-password"
CONFLICT = "command-id-conflict"


def reset_session_key(processor: CommandProcessor, *args: Any, **payload: Any) -> CommandOutcome:
    return run(processor, ResetSessionKey, handlers.reset_session_key, args, payload)


def reset_password(processor: CommandProcessor, *args: Any, **payload: Any) -> CommandOutcome:
    return run(processor, ResetAccountPassword, handlers.reset_account_password, args, payload)


def run(
    processor: CommandProcessor,
    model: Any,
    handler: Any,
    args: tuple[Any, ...],
    payload: dict[str, Any],
) -> CommandOutcome:
    """One delivery of a command, as the Celery task makes it."""
    return processor.run(model, handler, args=args, payload=payload, task_id=unique("task"))


def assert_names_nothing_of_the_first(refusal: CommandOutcome, first: CommandOutcome) -> None:
    """A different request under a used command_id: refused, and told nothing of the first."""
    assert refusal.code == CONFLICT
    assert refusal.status == "failure"
    assert refusal.accountid is None
    assert refusal.event_id != first.event_id
    assert refusal.command_id == first.command_id
