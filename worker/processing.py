"""The path every command takes: validate, apply in one transaction, record, publish.

payload ─> pydantic command ─> handler (rules) ─> outcome recorded with the update (commit)
                                                └─> dashboard bookkeeping ─> event on the stream
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from schemas import CommandLimits, CommandOutcome, ExceptionCode
from schemas.codes import CommandRejected
from schemas.commands import (
    MAX_COMMAND_ID_LENGTH,
    ResetAccountPassword,
    ResetSessionKey,
    is_storable,
    storable,
)
from worker.dashboard_bookkeeping import DashboardBookkeeping
from worker.events import EventStream
from worker.metrics import metrics
from worker.rule_deps import RuleDeps
from worker.sealed_fields import SealedFields
from worker.unit_of_work import UnitOfWork, mark_published_now

log = logging.getLogger(__name__)

C = TypeVar("C", ResetSessionKey, ResetAccountPassword)
Handler = Callable[[C, UnitOfWork, RuleDeps], str]


@dataclass(frozen=True)
class CommandProcessor:
    sessions: sessionmaker[Session]
    deps: RuleDeps
    sealed: SealedFields
    events: EventStream
    dashboard: DashboardBookkeeping
    limits: CommandLimits
    default_appid: str

    def run(
        self,
        model: type[C],
        handler: Handler[C],
        *,
        args: Sequence[Any],
        payload: dict[str, Any],
        task_id: str,
    ) -> CommandOutcome:
        """Process one delivery. Safe to repeat: a known command_id replays its outcome."""
        started = time.perf_counter()
        outcome, replayed = self._decide(model, handler, args, payload, task_id)
        seconds = time.perf_counter() - started
        code = outcome.code.value if outcome.code else "-"
        log.info(
            "%s %s command_id=%s status=%s code=%s in %.1f ms",
            outcome.command, "replayed" if replayed else "processed", outcome.command_id,
            outcome.status.value, code, seconds * 1000,
            extra={
                "command": outcome.command, "command_id": outcome.command_id,
                "outcome": outcome.code.value if outcome.code else "success",
                "replayed": replayed, "duration_ms": round(seconds * 1000, 3),
            },
        )  # fmt: skip
        counted = metrics()
        counted.commands.labels(outcome.command, outcome.code or "success").inc()
        counted.duration.labels(outcome.command).observe(seconds)
        self._announce(outcome)
        return outcome

    def _decide(
        self,
        model: type[C],
        handler: Handler[C],
        args: Sequence[Any],
        payload: dict[str, Any],
        task_id: str,
    ) -> tuple[CommandOutcome, bool]:
        command_id, well_formed = _command_id(payload, task_id)
        appid = payload.get("appid")
        appid = self.default_appid if appid is None else appid
        with UnitOfWork(self.sessions) as uow:
            recorded = uow.recorded_outcome(command_id)
            if recorded is not None and recorded.command != model.name:
                # The id is taken by the other command: refuse, and leave its record alone.
                return self._reused_id(model, command_id, appid), False
            if recorded is not None:
                return recorded, True
            envelope = _Envelope(command_id, appid, well_formed=well_formed and not args)
            outcome = self._apply(model, handler, uow, payload, envelope)
            self.dashboard.in_transaction(uow, outcome)
            uow.record_outcome(outcome)
            try:
                uow.commit()
            except IntegrityError:
                # Another delivery of this command_id committed first: its outcome stands.
                uow.rollback()
                recorded = uow.recorded_outcome(command_id)
                if recorded is None:
                    raise
                return recorded, True
        return outcome, False

    def _apply(
        self,
        model: type[C],
        handler: Handler[C],
        uow: UnitOfWork,
        payload: dict[str, Any],
        envelope: _Envelope,
    ) -> CommandOutcome:
        command_id, appid = envelope.command_id, envelope.appid
        try:
            if not envelope.well_formed:
                raise CommandRejected(ExceptionCode.INVALID_PAYLOAD)
            opened = self.sealed.open(payload)
            command = model.parse({**opened, "appid": appid, "command_id": command_id}, self.limits)
            accountid = handler(command, uow, self.deps)  # type: ignore[arg-type]
        except CommandRejected as rejected:
            uow.rollback()
            return CommandOutcome.failure(
                command_id=command_id,
                command=model.name,
                code=rejected.code,
                appid=model.usable_appid(appid),
                accountid=rejected.accountid,
            )
        return CommandOutcome.success(
            command_id=command_id, command=model.name, appid=command.appid, accountid=accountid
        )

    @staticmethod
    def _reused_id(model: type[C], command_id: str, appid: Any) -> CommandOutcome:
        return CommandOutcome.failure(
            command_id=command_id,
            command=model.name,
            code=ExceptionCode.INVALID_PAYLOAD,
            appid=model.usable_appid(appid),
        )

    def _announce(self, outcome: CommandOutcome) -> None:
        """After the commit: the dashboard's bookkeeping, then the event; both are repeated
        on redelivery after a crash (or by the relay), and neither counts twice."""
        kept = self.dashboard.kept_after_commit(outcome)
        self.events.publish(outcome)
        metrics().publish_delay.labels("task").observe(_since(outcome.occurred_at))
        if not kept:
            return
        try:
            mark_published_now(self.sessions, [outcome.event_id], datetime.now(UTC))
        except SQLAlchemyError as exc:
            # Only bookkeeping: the event is out; the relay will publish it once more.
            log.warning("event %s published, not marked: %s", outcome.event_id, type(exc).__name__)

    def recorded_outcome(self, command_id: str, *, command: str) -> CommandOutcome | None:
        """The outcome recorded for this command, if the database can say."""
        try:
            with UnitOfWork(self.sessions) as uow:
                recorded = uow.recorded_outcome(command_id)
        except SQLAlchemyError as exc:
            log.warning("outcome of %s unknown: %s", command_id, type(exc).__name__)
            return None
        return recorded if recorded is not None and recorded.command == command else None


def _since(moment: datetime) -> float:
    return max((datetime.now(UTC) - moment).total_seconds(), 0.0)


@dataclass(frozen=True)
class _Envelope:
    command_id: str
    appid: Any
    well_formed: bool


def command_id_of(payload: dict[str, Any], task_id: str) -> str:
    """The key a delivery's outcome is recorded under."""
    return _command_id(payload, task_id)[0]


def _command_id(payload: dict[str, Any], task_id: str) -> tuple[str, bool]:
    """The producer's idempotency key, else the task id; and whether the given one was usable."""
    given = payload.get("command_id")
    task_id = storable(task_id, MAX_COMMAND_ID_LENGTH)  # a message id is the producer's text
    if given is None:
        return task_id, True
    if isinstance(given, str) and 0 < len(given) <= MAX_COMMAND_ID_LENGTH and is_storable(given):
        return given, True
    return task_id, False
