"""One transaction per command: the rules' reads and writes, and the outcome that records them."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, cast

from sqlalchemy import (
    ARRAY,
    Executable,
    Insert,
    Select,
    String,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from schemas import CommandOutcome
from worker.db.models import Account, Metric, OutcomeRecord, ResetCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedOutcome:
    outcome: CommandOutcome
    # The fingerprint of the request it answers; None on rows recorded before revision 0003.
    fingerprint: str | None


@dataclass(frozen=True)
class SqlUnitsOfWork:
    """The pipeline's transactions, on the database `sessions` are bound to."""

    sessions: sessionmaker[Session]
    # Where published outcomes wait to be marked a batch at a time (the worker's: bootstrap);
    # None marks each at once.
    marks: _Marks | None = None

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    def mark_published(self, event_ids: list[str], published_at: datetime) -> None:
        if self.marks is None:
            mark_published_now(self.sessions, event_ids, published_at)
        else:
            self.marks.add(event_ids)


class _Marks(Protocol):
    """worker/db/published_marks.py, which builds on this module."""

    def add(self, event_ids: list[str]) -> None: ...


def mark_published_now(
    sessions: sessionmaker[Session], event_ids: list[str], published_at: datetime
) -> None:
    """Mark outcomes published outside any transaction: on PostgreSQL one autocommitted
    UPDATE, one round trip (no BEGIN, no COMMIT); SQLite takes its own short transaction."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        with UnitOfWork(sessions) as uow:
            uow.mark_published(event_ids, published_at)
            uow.commit()
        return
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        connection.execute(_published(event_ids, published_at))


def _published(event_ids: list[str], published_at: datetime) -> Update:
    return (
        update(OutcomeRecord)
        .where(OutcomeRecord.event_id.in_(event_ids), OutcomeRecord.published_at.is_(None))
        .values(published_at=published_at)
    )


def _accounts() -> Table:
    return cast(Table, Account.__table__)


def _outcomes() -> Table:
    return cast(Table, OutcomeRecord.__table__)


def _ended_sessions(
    table: Table, session_key: Any, reset_at: Any, updated_at: Any
) -> dict[Any, Any]:
    """The columns a reset-session-key changes, as tasks/handlers.py `_end_sessions` does:
    a NULL key number is JavaScript's `null + 1`, 1."""
    return {
        table.c.sessionKey: session_key,
        table.c.sessionKeyNumber: func.coalesce(table.c.sessionKeyNumber, 0) + 1,
        table.c.sessionKeyLastResetAt: reset_at,
        table.c.updatedAt: updated_at,
    }


# The hot path's statements, built once a process: building one, and its cache key, cost more
# CPU than its round trip (about 0.2 ms a command); the values go in as parameters.


@functools.cache
def _end_sessions_of_listed() -> Update:
    """PostgreSQL: the listed accounts' new keys in one UPDATE over two arrays."""
    table = _accounts()
    given = (
        func.unnest(
            bindparam("b_accountids", type_=ARRAY(String)), bindparam("b_keys", type_=ARRAY(String))
        )
        .table_valued("accountid", "session_key")
        .render_derived()
    )
    now = {
        "reset_at": bindparam("b_reset_at", type_=table.c.sessionKeyLastResetAt.type),
        "updated_at": bindparam("b_updated_at", type_=table.c.updatedAt.type),
    }
    return (
        update(table)
        .where(
            table.c.accountid == given.c.accountid,
            table.c.appid == bindparam("b_appid"),
            table.c.deletedAt.is_(None),
        )
        .values(_ended_sessions(table, given.c.session_key, **now))
        .returning(table.c.accountid)
    )


@functools.cache
def _recorded() -> Select[tuple[str, str | None]]:
    table = _outcomes()
    return select(table.c.event, table.c.fingerprint).where(
        table.c.scope == bindparam("b_scope"), table.c.command_id == bindparam("b_command_id")
    )


@functools.cache
def _record() -> Insert:
    return insert(_outcomes())


def _metric_upsert(session: Session, appid: str, metricid: str, now: datetime) -> Executable:
    table = cast(Table, Metric.__table__)
    row = {"metricid": metricid, "appid": appid, "value": 1, "createdAt": now, "updatedAt": now}
    counted = {
        "appid": appid,
        "value": func.coalesce(table.c.value, 0) + 1,
        "updatedAt": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        mysql_insert = mysql.insert(table).values(row)
        return mysql_insert.on_duplicate_key_update(counted)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(table).values(row).on_conflict_do_update(index_elements=["metricid"], set_=counted)
    )


class UnitOfWork:
    """A session in a transaction that rolls back unless `commit` is called."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._after_commit: list[Callable[[], None]] = []
        self._outcome_rows: list[dict[str, Any]] = []

    def __enter__(self) -> UnitOfWork:
        self.session = self._sessions()
        self.session.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        # Taken first: a failed commit drops them, as a rollback does.
        hooks, self._after_commit = self._after_commit, []
        rows, self._outcome_rows = self._outcome_rows, []
        for row in rows:
            self.session.execute(_record(), row)
        self.session.commit()
        for hook in hooks:
            try:
                hook()
            except Exception as exc:
                # The commit stands whatever a hook does; its text may quote a value.
                log.warning("after-commit hook failed: %s", type(exc).__name__)

    def rollback(self) -> None:
        self._after_commit.clear()
        self._outcome_rows.clear()
        self.session.rollback()

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once this transaction has committed; never if it rolls back or fails.

        Redis state that must follow the database's (the attempt counts a success gives back)
        changes there, not inside the transaction, where a rollback could not undo it.
        """
        self._after_commit.append(hook)

    # Accounts and reset codes (the dashboard's tables).

    def account_by_id(self, accountid: str, appid: str) -> Account | None:
        query = select(Account).where(Account.accountid == accountid, Account.appid == appid)
        return self.session.scalars(query.with_for_update()).one_or_none()

    def account_by_username_hash(self, username_hash: str, appid: str) -> Account | None:
        query = select(Account).where(
            Account.username_hash == username_hash, Account.appid == appid
        )
        return self.session.scalars(query.with_for_update()).first()

    def reset_code(
        self,
        *,
        secret_code_hash: str,
        accountid: str,
        appid: str,
        created_after: datetime | None = None,
    ) -> ResetCode | None:
        query = select(ResetCode).where(
            ResetCode.secret_code_hash == secret_code_hash,
            ResetCode.accountid == accountid,
            ResetCode.appid == appid,
        )
        if created_after is not None:
            query = query.where(ResetCode.created_at >= created_after)
        return self.session.scalars(query).first()

    def delete_reset_codes(self, *, accountid: str, appid: str) -> None:
        self.session.execute(
            delete(ResetCode).where(ResetCode.accountid == accountid, ResetCode.appid == appid)
        )

    def live_accountids(self, *, appid: str, after: str | None, limit: int) -> list[str]:
        """Up to `limit` accounts of `appid` that are not deleted, in accountid order after
        `after` (from the first when None), locked until the transaction ends."""
        query = select(Account.accountid).where(
            Account.appid == appid, Account.deleted_at.is_(None)
        )
        if after is not None:
            query = query.where(Account.accountid > after)
        query = query.order_by(Account.accountid).limit(limit).with_for_update()
        return list(self.session.scalars(query))

    def end_sessions_of(self, keys: dict[str, str], *, appid: str, now: datetime) -> list[str]:
        """Give each account of `keys` (accountid -> new session key) in `appid` that is not
        deleted its new key, its key number + 1 and `now`; the accountids changed, in order.

        PostgreSQL: one statement over arrays. Elsewhere: the live accounts locked, then one
        update per account (an executemany)."""
        accountids = sorted(keys)  # one lock order for every chunk: no deadlock between them
        if self.session.get_bind().dialect.name == "postgresql":
            return self._end_sessions_in_one_statement(keys, accountids, appid=appid, now=now)
        live = self.session.scalars(
            select(Account.accountid)
            .where(
                Account.appid == appid,
                Account.deleted_at.is_(None),
                Account.accountid.in_(accountids),
            )
            .order_by(Account.accountid)
            .with_for_update()
        ).all()
        # An accountid the database's collation matched but that is not the one given (MariaDB:
        # `ACCT_x` finds `acct_x`) is not that account.
        live = [accountid for accountid in live if accountid in keys]
        if live:
            table = _accounts()
            self.session.execute(
                update(table)
                .where(table.c.accountid == bindparam("b_accountid"))
                .values(_ended_sessions(table, bindparam("b_key"), now, now)),
                [{"b_accountid": accountid, "b_key": keys[accountid]} for accountid in live],
            )
        return list(live)

    def _end_sessions_in_one_statement(
        self, keys: dict[str, str], accountids: list[str], *, appid: str, now: datetime
    ) -> list[str]:
        parameters = {
            "b_accountids": accountids,
            "b_keys": [keys[accountid] for accountid in accountids],
            "b_appid": appid,
            "b_reset_at": now,
            "b_updated_at": now,
        }
        return sorted(self.session.scalars(_end_sessions_of_listed(), parameters))

    def count_dashboard_metric(self, *, appid: str, metricids: list[str], now: datetime) -> None:
        """The dashboard's `Metric.upsert` then `Metric.increment`, one statement per counter.

        Its `metricid` alone is the key: the upsert takes the row over for this appid.
        """
        for metricid in metricids:
            self.session.execute(_metric_upsert(self.session, appid, metricid, now))

    # Outcomes (the worker's own table).

    def recorded_outcome(self, *, scope: str, command_id: str) -> RecordedOutcome | None:
        """The outcome recorded under `command_id` in `scope` (an appid), with its request's
        fingerprint. Two columns in Core: the ORM's identity map and row objects cost the hot
        path CPU and hold nothing it needs."""
        parameters = {"b_scope": scope, "b_command_id": command_id}
        row = self.session.execute(_recorded(), parameters).first()
        if row is None:
            return None
        outcome = CommandOutcome.model_validate_json(row.event)
        return RecordedOutcome(outcome=outcome, fingerprint=row.fingerprint)

    def record_outcome(
        self, outcome: CommandOutcome, *, scope: str, fingerprint: str | None
    ) -> None:
        """Record `outcome` as the answer to the request of `fingerprint` (None: to any
        request of its command, as rows recorded before fingerprints are). Inserted (one Core
        INSERT) as the transaction commits: a key recorded meanwhile fails the commit."""
        self._outcome_rows.append(
            {
                "scope": scope,
                "command_id": outcome.command_id,
                "fingerprint": fingerprint,
                "event_id": outcome.event_id,
                "command": outcome.command,
                "status": outcome.status.value,
                "code": outcome.code.value if outcome.code else None,
                "appid": outcome.appid,
                "accountid": outcome.accountid,
                "event": outcome.model_dump_json(),
                "recorded_at": outcome.occurred_at,
            }
        )

    def mark_published(self, event_ids: list[str], published_at: datetime) -> None:
        self.session.execute(_published(event_ids, published_at))

    def unpublished_outcomes(
        self, *, recorded_before: datetime, limit: int
    ) -> list[CommandOutcome]:
        """Outcomes committed but not yet published, oldest first.

        Rows another relay holds are skipped (PostgreSQL), so nodes do not publish in step.
        """
        query = (
            select(OutcomeRecord.event)
            .where(OutcomeRecord.published_at.is_(None))
            .where(OutcomeRecord.recorded_at < recorded_before)
            .order_by(OutcomeRecord.recorded_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [CommandOutcome.model_validate_json(event) for event in self.session.scalars(query)]

    def prune_outcomes(self, *, published_before: datetime) -> int:
        """Forget outcomes published long ago; their command_ids may then be applied again."""
        result = self.session.execute(
            delete(OutcomeRecord).where(OutcomeRecord.published_at < published_before)
        )
        return int(getattr(result, "rowcount", 0) or 0)
