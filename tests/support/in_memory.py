"""The unit ring's world: the pipeline's parts in memory, behind the interfaces in tasks/ports.py.

A unit of work here keeps what a database transaction keeps: its reads are copies, its writes
reach the rows only at `commit`, a rollback (or leaving it uncommitted) forgets them, and a
second outcome under a recorded key fails the commit as the primary key does (IntegrityError).
The attempt counter keeps the real one's limits and once-per-delivery decisions, without the
windows (nothing in the unit ring waits for one to pass).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from schemas import CommandLimits, CommandOutcome, ResetAccountPassword, ResetSessionKey
from tasks.deps import RuleDeps
from tasks.handlers import handler_for
from tasks.pipeline import C, CommandProcessor
from tests.support.payloads import password_payload as password_payload
from worker.db.models import Account, ResetCode
from worker.db.unit_of_work import RecordedOutcome
from worker.ops.metrics import Observer
from worker.security.attempts import Limit, Reservation
from worker.security.fingerprints import RequestFingerprints
from worker.security.hashing import Hasher
from worker.security.sealed_fields import SealedFields
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.cache import DashboardCache

Row = TypeVar("Row", Account, ResetCode)


def _copy(row: Row) -> Row:
    """A detached copy of a row's columns: what a fresh read in another transaction sees."""
    columns = sa.inspect(type(row)).column_attrs
    return type(row)(**{column.key: getattr(row, column.key) for column in columns})


@dataclass
class _Outcome:
    outcome: CommandOutcome
    fingerprint: str | None
    published_at: datetime | None = None


@dataclass
class InMemoryDatabase:
    """The committed rows."""

    accounts: dict[str, Account] = field(default_factory=dict)
    codes: dict[str, ResetCode] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], _Outcome] = field(default_factory=dict)
    # The dashboard's metrics table: metricid -> (appid, value).
    metrics: dict[str, tuple[str, int]] = field(default_factory=dict)
    commits: int = 0

    def add_account(
        self, hasher: Hasher, *, appid: str = "test-app", deleted: bool = False
    ) -> tuple[str, str]:
        """A new account (password "old-password"); its accountid and username."""
        now = datetime.now(UTC)
        username = f"user-{secrets.token_hex(6)}"
        account = Account(
            accountid=f"acct_{secrets.token_hex(8)}",
            appid=appid,
            username_hash=hasher.lookup_hash(username),
            password_hash=hasher.password_hash("old-password"),
            session_key=secrets.token_hex(32),
            session_key_number=1,
            deleted_at=now if deleted else None,
            created_at=now,
            updated_at=now,
        )
        self.accounts[account.accountid] = account
        return account.accountid, username

    def add_code(
        self, hasher: Hasher, accountid: str, *, created_at: datetime | None = None
    ) -> str:
        """A new reset code for the account; its secret."""
        code = f"code-{secrets.token_hex(6)}"
        account = self.accounts[accountid]
        row = ResetCode(
            codeid=f"code_{secrets.token_hex(8)}",
            appid=account.appid,
            accountid=accountid,
            secret_code_hash=hasher.lookup_hash(code),
            created_at=created_at or datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        self.codes[row.codeid] = row
        return code

    def account(self, accountid: str) -> Account:
        return _copy(self.accounts[accountid])

    def codes_of(self, accountid: str) -> int:
        return sum(1 for code in self.codes.values() if code.accountid == accountid)

    def recorded(self, scope: str, command_id: str) -> _Outcome | None:
        return self.outcomes.get((scope, command_id))


def _is_account(accountid: str, row: Account) -> bool:
    return row.accountid == accountid


class InMemoryUnitOfWork:
    """One transaction on an `InMemoryDatabase` (satisfies tasks.ports.UnitOfWork)."""

    def __init__(self, database: InMemoryDatabase) -> None:
        self._db = database
        self._forget()
        self.ended = False
        self.failed_hooks: list[Exception] = []

    def _forget(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._deleted_codes: set[str] = set()
        self._outcomes: dict[tuple[str, str], _Outcome] = {}
        self._metrics: list[tuple[str, str, datetime]] = []
        self._after_commit: list[Callable[[], None]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()
        self.ended = True

    def commit(self) -> None:
        hooks, self._after_commit = self._after_commit, []
        taken = [key for key in self._outcomes if key in self._db.outcomes]
        if taken:
            self._forget()
            raise IntegrityError("INSERT INTO account_reset_outcomes", None, KeyError(taken[0]))
        for accountid, account in self._accounts.items():
            self._db.accounts[accountid] = _copy(account)
        for codeid in self._deleted_codes:
            self._db.codes.pop(codeid, None)
        self._db.outcomes.update(self._outcomes)
        for appid, metricid, _now in self._metrics:
            _, value = self._db.metrics.get(metricid, (appid, 0))
            self._db.metrics[metricid] = (appid, value + 1)
        self._db.commits += 1
        self._forget()
        for hook in hooks:
            try:
                hook()
            except Exception as exc:  # the commit stands whatever a hook does, as in SQL's
                self.failed_hooks.append(exc)

    def rollback(self) -> None:
        self._forget()

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._after_commit.append(hook)

    def account_by_id(self, accountid: str, appid: str) -> Account | None:
        return self._read(lambda a: a.accountid == accountid and a.appid == appid)

    def account_by_username_hash(self, username_hash: str, appid: str) -> Account | None:
        return self._read(lambda a: a.username_hash == username_hash and a.appid == appid)

    def _read(self, matches: Callable[[Account], bool]) -> Account | None:
        for accountid, stored in self._db.accounts.items():
            if matches(self._accounts.get(accountid, stored)):
                if accountid not in self._accounts:
                    self._accounts[accountid] = _copy(stored)
                return self._accounts[accountid]
        return None

    def reset_code(
        self,
        *,
        secret_code_hash: str,
        accountid: str,
        appid: str,
        created_after: datetime | None = None,
    ) -> ResetCode | None:
        for codeid, code in self._db.codes.items():
            fresh = created_after is None or (
                code.created_at is not None and code.created_at >= created_after
            )
            if (
                codeid not in self._deleted_codes
                and (code.secret_code_hash, code.accountid, code.appid)
                == (secret_code_hash, accountid, appid)
                and fresh
            ):
                return _copy(code)
        return None

    def delete_reset_codes(self, *, accountid: str, appid: str) -> None:
        self._deleted_codes |= {
            codeid
            for codeid, code in self._db.codes.items()
            if (code.accountid, code.appid) == (accountid, appid)
        }

    def live_accountids(self, *, appid: str, after: str | None, limit: int) -> list[str]:
        live = sorted(
            accountid
            for accountid, stored in self._db.accounts.items()
            if (after is None or accountid > after) and self._is_live(stored, appid)
        )
        return live[:limit]

    def end_sessions_of(self, keys: dict[str, str], *, appid: str, now: datetime) -> list[str]:
        reset = []
        for accountid in sorted(keys):
            account = self._read(partial(_is_account, accountid))
            if account is None or not self._is_live(account, appid):
                continue
            account.session_key = keys[accountid]
            account.session_key_number = (account.session_key_number or 0) + 1
            account.session_key_last_reset_at = account.updated_at = now
            reset.append(accountid)
        return reset

    def _is_live(self, stored: Account, appid: str) -> bool:
        account = self._accounts.get(stored.accountid, stored)
        return account.appid == appid and account.deleted_at is None

    def count_dashboard_metric(self, *, appid: str, metricids: list[str], now: datetime) -> None:
        self._metrics += [(appid, metricid, now) for metricid in metricids]

    def recorded_outcome(self, *, scope: str, command_id: str) -> RecordedOutcome | None:
        row = self._outcomes.get((scope, command_id)) or self._db.recorded(scope, command_id)
        return None if row is None else RecordedOutcome(row.outcome, row.fingerprint)

    def record_outcome(
        self, outcome: CommandOutcome, *, scope: str, fingerprint: str | None
    ) -> None:
        self._outcomes[(scope, outcome.command_id)] = _Outcome(outcome, fingerprint)


@dataclass
class InMemoryUnitsOfWork:
    """The pipeline's transactions on one database (satisfies tasks.ports.UnitsOfWork)."""

    database: InMemoryDatabase
    opened: list[InMemoryUnitOfWork] = field(default_factory=list)

    def __call__(self) -> InMemoryUnitOfWork:
        unit = InMemoryUnitOfWork(self.database)
        self.opened.append(unit)
        return unit

    def mark_published(self, event_ids: list[str], published_at: datetime) -> None:
        for row in self.database.outcomes.values():
            if row.outcome.event_id in event_ids and row.published_at is None:
                row.published_at = published_at


@dataclass
class InMemoryAttempts:
    """The guessing limits (satisfies tasks.ports.AttemptCounter): per account, per source,
    per appid, each decided once per delivery (command_id, account and code)."""

    observer: Observer
    max_attempts: int = 5
    max_source_attempts: int = 20
    max_appid_attempts: int = 200
    counts: Counter[str] = field(default_factory=Counter)
    decided: dict[str, Limit | None] = field(default_factory=dict)

    def reserve(
        self,
        *,
        appid: str,
        accountid: str,
        command_id: str,
        secret_code: str,
        source: str | None = None,
    ) -> Reservation:
        limits: list[tuple[Limit, str, int]] = [
            ("account", f"account:{appid}:{accountid}", self.max_attempts),
            ("appid", f"appid:{appid}", self.max_appid_attempts),
        ]
        if source is not None:
            limits.insert(1, ("source", f"source:{appid}:{source}", self.max_source_attempts))
        delivery = f"delivery:{appid}:{command_id}:{accountid}:{secret_code}"
        keys = (delivery, *(key for _, key, _ in limits))
        if delivery in self.decided:
            return Reservation(refused_by=self.decided[delivery], keys=keys)
        refused_by = next((name for name, key, most in limits if self.counts[key] >= most), None)
        if refused_by is None:
            self.counts.update(key for _, key, _ in limits)
            self.observer.guess_checked()
        else:
            self.observer.guess_refused(limit=refused_by)
        self.decided[delivery] = refused_by
        return Reservation(refused_by=refused_by, keys=keys)

    def succeeded(self, reservation: Reservation) -> None:
        delivery, account, *others = reservation.keys
        self.decided.pop(delivery, None)
        self.counts.pop(account, None)
        for key in others:
            if self.counts[key] > 0:
                self.counts[key] -= 1

    def used(self, *, appid: str, accountid: str) -> int:
        return self.counts[f"account:{appid}:{accountid}"]


@dataclass
class InMemoryEvents:
    """The event stream (satisfies tasks.ports.EventPublisher)."""

    published: list[CommandOutcome] = field(default_factory=list)

    def publish(self, outcome: CommandOutcome) -> str:
        self.published.append(outcome)
        return f"{len(self.published)}-0"


@dataclass
class RecordingObserver:
    """Every report, in order, as (what, details) (satisfies worker.ops.metrics.Observer)."""

    reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def named(self, what: str) -> list[dict[str, Any]]:
        return [details for name, details in self.reports if name == what]

    def command_processed(self, *, command: str, outcome: str, seconds: float) -> None:
        self.reports.append(("command_processed", {"command": command, "outcome": outcome}))

    def published(self, *, by: str, delay_s: float) -> None:
        self.reports.append(("published", {"by": by}))

    def retried(self, *, command: str, fault: str) -> None:
        self.reports.append(("retried", {"command": command, "fault": fault}))

    def dead_lettered(self, *, reason: str) -> None:
        self.reports.append(("dead_lettered", {"reason": reason}))

    def guess_checked(self) -> None:
        self.reports.append(("guess_checked", {}))

    def guess_refused(self, *, limit: str) -> None:
        self.reports.append(("guess_refused", {"limit": limit}))

    def bulk_reset(self, *, accounts: int) -> None:
        self.reports.append(("bulk_reset", {"accounts": accounts}))

    def refused_by_redis(self, *, error: str) -> None:
        self.reports.append(("refused_by_redis", {"error": error}))


UnitProcessor = CommandProcessor[InMemoryUnitsOfWork, InMemoryAttempts, InMemoryEvents]


def in_memory_processor(
    hasher: Hasher,
    observer: Observer,
    *,
    fingerprint_key: str,
    sealed: SealedFields | None = None,
) -> UnitProcessor:
    """The worker's command path with every part in memory; the dashboard's metrics counted
    in its table (the unit of work's), its cache absent."""
    return CommandProcessor(
        units=InMemoryUnitsOfWork(InMemoryDatabase()),
        deps=RuleDeps(hasher=hasher, attempts=InMemoryAttempts(observer=observer)),
        sealed=sealed or SealedFields(keys=None, required=False, max_field_length=1024),
        events=InMemoryEvents(),
        dashboard=DashboardBookkeeping(cache=DashboardCache(None), metrics_store="database"),
        limits=CommandLimits(),
        default_appid="test-app",
        fingerprints=RequestFingerprints.keyed(fingerprint_key),
        observer=observer,
    )


def deliver(processor: UnitProcessor, model: type[C], *args: Any, **payload: Any) -> CommandOutcome:
    """One delivery of a command, as the Celery task makes it."""
    return processor.run(
        model,
        handler_for(model),
        args=args,
        payload=payload,
        task_id=f"task-{secrets.token_hex(6)}",
    )


def reset_session_key(processor: UnitProcessor, *args: Any, **payload: Any) -> CommandOutcome:
    return deliver(processor, ResetSessionKey, *args, **payload)


def reset_password(processor: UnitProcessor, *args: Any, **payload: Any) -> CommandOutcome:
    return deliver(processor, ResetAccountPassword, *args, **payload)


def revoke(processor: UnitProcessor, accountid: str, **more: Any) -> CommandOutcome:
    """An account ending its own sessions."""
    return reset_session_key(processor, accountid=accountid, requester_accountid=accountid, **more)
