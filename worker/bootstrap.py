"""The one place where the worker's parts are built and wired together.

Nothing connects at import time. Each process builds its own runtime on first use, so a
prefork pool child never shares a database or Redis connection with its parent.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Engine

from client.redis_clients import redis_client
from schemas import ExceptionCode
from tasks.deps import RuleDeps
from tasks.pipeline import CommandProcessor
from worker.broker.chunk_senders import ChunkSenders
from worker.db.engine import create_db_engine, session_factory
from worker.db.published_marks import MARK_WITHIN_S, PublishedMarks
from worker.db.unit_of_work import SqlUnitsOfWork
from worker.dev.embedded_redis import shared_embedded_redis
from worker.ops.health_notes import this_node_note
from worker.ops.metrics import PROMETHEUS, Observer
from worker.security.attempts import CodeAttempts, counts_naming_key
from worker.security.fingerprints import RequestFingerprints
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.settings import Settings, get_settings, payload_sealer
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.cache import DashboardCache
from worker.streams.dead_letters import DeadLetterBox
from worker.streams.outbox import OutboxRelay
from worker.streams.publisher import EventStream

log = logging.getLogger(__name__)


def settings() -> Settings:
    """The worker's settings, read from the environment once a process: every part of the
    worker reads them here. Reading them connects to nothing and builds no runtime, so the main
    process may read them before its pool forks."""
    return get_settings()


def health_file() -> Path:
    """This worker node's liveness note, beside which its processes note faults
    (worker/ops/health_notes.py)."""
    return this_node_note(settings().health_file)


def reread_settings() -> Settings:
    """Read the environment again (`account-reset worker --sessions` changes it first)."""
    get_settings.cache_clear()
    return get_settings()


def observer() -> Observer:
    """What every part reports to: the worker's metrics. Builds nothing until a report comes,
    and then only this process's metrics, so the main process may report before it forks."""
    return PROMETHEUS


_found_broker_url: str | None = None


def use_found_broker(url: str) -> None:
    """An operator's command without a broker URL talks to the Redis it found (a running
    worker's embedded one, else the default: client/local_broker.py), not to an embedded Redis
    of its own, which would hold nothing."""
    global _found_broker_url
    _found_broker_url = url


def broker_url(settings: Settings) -> str:
    """The configured broker, or (development only) the one found for an operator's command,
    or an embedded Redis started now."""
    return settings.broker_url or _found_broker_url or shared_embedded_redis().url


def events_url(settings: Settings) -> str:
    return settings.events_url or broker_url(settings)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    processor: CommandProcessor
    dead_letters: DeadLetterBox
    relay: OutboxRelay
    observer: Observer
    pid: int
    marks: PublishedMarks
    chunk_senders: ChunkSenders


def dead_letter_box(settings: Settings) -> DeadLetterBox:
    """The dead letters; also what the operator commands open, without a database."""
    return DeadLetterBox(
        client=redis_client(events_url(settings), settings.redis_options),
        key=settings.dead_letters_key,
        maxlen=settings.dead_letters_maxlen,
        sealer=payload_sealer(settings.payload_key) if settings.payload_key else None,
        observer=observer(),
    )


def _seconds(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def hasher(settings: Settings) -> Hasher:
    """The dashboard's hashes, keyed as the dashboard is (HASH_MODE)."""
    return Hasher(key=settings.dashboard_key, bcrypt_rounds=settings.bcrypt_rounds)


def warn_of_weak_settings(settings: Settings) -> None:
    """Said once, when a worker starts."""
    if settings.hash_mode == "unkeyed":
        log.warning(
            "ACCOUNT_RESET_HASH_MODE=unkeyed: the dashboard has no dashboardEncryptionKey, so its"
            " username, reset-code and session hashes are unkeyed (anyone who reads the database"
            " can test guesses offline); set a key in the dashboard and HASH_KEY here"
        )
    if settings.fingerprint_secret is None:
        log.warning(
            "ACCOUNT_RESET_IDEMPOTENCY_KEY unset in unkeyed mode: request fingerprints leave out"
            " username, secret-code and new-password, so a different password reset sent under"
            " a used command_id in the same appid is answered with the recorded outcome; set"
            " ACCOUNT_RESET_IDEMPOTENCY_KEY (16 characters or more)"
        )


def request_fingerprints(settings: Settings) -> RequestFingerprints:
    """What binds a recorded outcome to its request (IDEMPOTENCY_KEY, else HASH_KEY)."""
    secret = settings.fingerprint_secret
    return RequestFingerprints(key=None) if secret is None else RequestFingerprints.keyed(secret)


def outlives_outcomes_s(settings: Settings) -> int:
    """How long a key that guards a replay lives: a day past the outcomes' retention, after
    which no replay of their commands can come."""
    return (settings.outcome_retention_days + 1) * 24 * 3600


def dashboard_bookkeeping(
    settings: Settings, cache_client: redis.Redis | None
) -> DashboardBookkeeping:
    metrics_url = settings.dashboard_metrics_url
    return DashboardBookkeeping(
        cache=DashboardCache(cache_client),
        metrics_store=settings.dashboard_metrics,
        metrics_client=redis_client(metrics_url, settings.redis_options) if metrics_url else None,
        zone=ZoneInfo(settings.dashboard_timezone),
        marker_ttl_s=outlives_outcomes_s(settings),
    )


def sealed_fields(settings: Settings) -> SealedFields:
    """What opens producers' sealed fields: the sealing keys, and Fernet only when the legacy
    format is switched on (PAYLOAD_KEY otherwise seals dead letters alone)."""
    key = settings.payload_key if settings.legacy_fernet_sealed else None
    return SealedFields(
        keys=settings.sealing_key_set,
        required=settings.require_sealed,
        max_field_length=settings.max_field_length,
        max_age_s=settings.sealed_max_age_s,
        legacy=payload_sealer(key) if key is not None else None,
    )


def rule_deps(settings: Settings, client: redis.Redis) -> RuleDeps:
    ttl = settings.code_ttl_seconds
    return RuleDeps(
        hasher=hasher(settings),
        attempts=CodeAttempts(
            client=client,
            key_prefix=settings.attempts_key_prefix,
            max_attempts=settings.max_code_attempts,
            window_s=settings.attempt_window_seconds,
            # A stock dashboard (unkeyed, key "") has no secret to name counts by.
            naming_key=counts_naming_key(settings.dashboard_key or None),
            max_source_attempts=settings.max_source_attempts,
            source_window_s=settings.source_attempt_window_seconds,
            max_appid_attempts=settings.max_appid_attempts,
            appid_window_s=settings.appid_attempt_window_seconds,
            observer=observer(),
        ),
        code_ttl=_seconds(ttl),
        bulk_chunk=settings.bulk_chunk,
    )


def build_runtime(settings: Settings) -> Runtime:
    engine = create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        lock_timeout_s=settings.db_lock_timeout_s,
        idle_in_transaction_timeout_s=settings.idle_in_transaction_timeout_s,
    )
    sessions = session_factory(engine)
    marks = PublishedMarks(sessions, within_s=min(MARK_WITHIN_S, settings.relay_grace_s / 4))
    cache_url = settings.cache_url
    cache_client = redis_client(cache_url, settings.redis_options) if cache_url else None
    bookkeeping = dashboard_bookkeeping(settings, cache_client)
    events = EventStream(
        client=redis_client(events_url(settings), settings.redis_options),
        stream=settings.events_stream,
        maxlen=settings.events_stream_maxlen,
        max_age=_seconds(settings.events_retention_seconds),
    )
    processor = CommandProcessor(
        units=SqlUnitsOfWork(sessions, marks=marks),
        deps=rule_deps(settings, events.client),
        sealed=sealed_fields(settings),
        events=events,
        dashboard=bookkeeping,
        limits=settings.limits,
        default_appid=settings.appid,
        fingerprints=request_fingerprints(settings),
        conflict_code=ExceptionCode(settings.command_id_conflict_code),
        observer=observer(),
    )
    relay = OutboxRelay(
        sessions=sessions,
        events=events,
        dashboard=bookkeeping,
        grace=timedelta(seconds=settings.relay_grace_s),
        batch_size=settings.relay_batch_size,
        retention=timedelta(days=settings.outcome_retention_days),
        observer=observer(),
    )
    return Runtime(
        settings=settings,
        engine=engine,
        processor=processor,
        dead_letters=dead_letter_box(settings),
        relay=relay,
        observer=observer(),
        pid=os.getpid(),
        marks=marks,
        chunk_senders=ChunkSenders(
            client=redis_client(broker_url(settings), settings.redis_options),
            queue=settings.queue,
            ttl_s=outlives_outcomes_s(settings),
        ),
    )


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built on first use (and again in a forked child)."""
    global _runtime
    if _runtime is not None and _runtime.pid != os.getpid():
        # Inherited through fork: the parent's connections are the parent's. Closing them
        # here would end the parent's database sessions, so they are only let go.
        _runtime.engine.dispose(close=False)
        _runtime = None
    if _runtime is None:
        _runtime = build_runtime(settings())
    return _runtime


def mark_what_was_published() -> None:
    """The published outcomes this process has not yet marked, marked now (a pool process
    ending); nothing when it built no runtime of its own."""
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.marks.flush()
