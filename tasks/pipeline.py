"""The path every command takes: validate, apply in one transaction, record, publish.

payload ─> sealed fields opened, request fingerprinted ─> pydantic command ─> handler (rules)
        ─> outcome recorded with the update (commit) ─> dashboard bookkeeping ─> event on the stream

A command_id already recorded in the appid answers only the request recorded with it: that
request (same fingerprint) gets the recorded outcome again, any other `command-id-conflict`,
which is not recorded and says nothing of the first.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from typing_extensions import TypeVar

from schemas import CommandLimits, CommandOutcome, ExceptionCode
from schemas.codes import CommandRejected
from schemas.commands import (
    MAX_COMMAND_ID_LENGTH,
    is_storable,
    storable,
)
from schemas.fields import APPID, COMMAND_ID
from tasks.deps import Attempts, RuleDeps
from tasks.ports import C, CommandModel, EventPublisher, Handler, UnitOfWork, UnitsOfWork
from worker.db.unit_of_work import RecordedOutcome, SqlUnitsOfWork
from worker.ops.metrics import PROMETHEUS, Observer
from worker.security.fingerprints import RequestFingerprints
from worker.security.sealed_fields import SealedFields
from worker.streams.bookkeeping import DashboardBookkeeping
from worker.streams.publisher import EventStream

log = logging.getLogger(__name__)

__all__ = ["Answer", "C", "CommandModel", "CommandProcessor", "Handler", "command_id_of"]

# The worker's transactions are the database's and its events go to Redis; the unit ring's
# are in memory.
Units = TypeVar("Units", bound=UnitsOfWork, default=SqlUnitsOfWork, covariant=True)
Events = TypeVar("Events", bound=EventPublisher, default=EventStream, covariant=True)

# The scope of commands whose appid is unusable (no appid is empty): they are invalid-payload,
# and none of them can claim a command_id in a real appid.
UNUSABLE_APPID_SCOPE = ""


class Answer(StrEnum):
    """How a delivery was answered; the log line's word for it."""

    PROCESSED = "processed"  # applied, or refused by the rules; recorded
    REPLAYED = "replayed"  # the outcome recorded for this same request, again
    REFUSED = "refused"  # the command_id is another request's: command-id-conflict, unrecorded


@dataclass(frozen=True)
class CommandProcessor(Generic[Units, Attempts, Events]):
    units: Units
    deps: RuleDeps[Attempts]
    sealed: SealedFields
    events: Events
    dashboard: DashboardBookkeeping
    limits: CommandLimits
    default_appid: str
    fingerprints: RequestFingerprints
    # What a different request under a recorded command_id is told (COMMAND_ID_CONFLICT_CODE).
    conflict_code: ExceptionCode = ExceptionCode.COMMAND_ID_CONFLICT
    observer: Observer = PROMETHEUS

    def run(
        self,
        model: type[C],
        handler: Handler[C],
        *,
        args: Sequence[Any],
        payload: dict[str, Any],
        task_id: str,
    ) -> CommandOutcome:
        """Process one delivery. Safe to repeat: a known request replays its outcome."""
        started = time.perf_counter()
        request = self._request(model, args, payload, task_id)
        outcome, answer = self._decide(model, handler, request)
        seconds = time.perf_counter() - started
        code = outcome.code.value if outcome.code else "-"
        log.info(
            "%s %s command_id=%s status=%s code=%s in %.1f ms",
            outcome.command, answer.value, outcome.command_id,
            outcome.status.value, code, seconds * 1000,
            extra={
                "command": outcome.command, "command_id": outcome.command_id,
                "outcome": outcome.code.value if outcome.code else "success",
                "replayed": answer is Answer.REPLAYED, "duration_ms": round(seconds * 1000, 3),
            },
        )  # fmt: skip
        self.observer.command_processed(
            command=outcome.command, outcome=code if outcome.code else "success", seconds=seconds
        )
        if outcome.bulk is not None and answer is Answer.PROCESSED:
            self.observer.bulk_reset(accounts=len(outcome.bulk.accountids))
        self._announce(outcome, answer)
        return outcome

    def _request(
        self, model: CommandModel, args: Sequence[Any], payload: dict[str, Any], task_id: str
    ) -> _Request:
        """The delivery as the idempotency record sees it: its key, scope and fingerprint."""
        command_id, well_formed = _command_id(payload, task_id)
        appid = payload.get(APPID)
        appid = self.default_appid if appid is None else appid
        fields, refusal = payload, None
        if not well_formed or args:
            refusal = ExceptionCode.INVALID_PAYLOAD
        else:
            try:
                fields = self.sealed.open(payload, command=model.name, command_id=command_id)
            except CommandRejected as rejected:
                refusal = rejected.code
        # Over the message as sent: a sealed field counts as its token, never as the text it
        # opens to, or replay-versus-conflict would tell whoever re-seals a guess under a
        # recorded command_id whether it equals the secret there (a code oracle, uncounted).
        fingerprint = self.fingerprints.of(
            model, command=model.name, appid=appid, fields=payload, positional=len(args)
        )
        scope = model.usable_appid(appid) or UNUSABLE_APPID_SCOPE
        return _Request(command_id, appid, scope, fields, refusal, fingerprint)

    def _decide(
        self, model: type[C], handler: Handler[C], request: _Request
    ) -> tuple[CommandOutcome, Answer]:
        with self.units() as uow:
            recorded = uow.recorded_outcome(scope=request.scope, command_id=request.command_id)
            if recorded is not None:
                return self._answer_to(model, request, recorded)
            outcome = self._apply(model, handler, uow, request)
            self.dashboard.in_transaction(uow, outcome)
            uow.record_outcome(outcome, scope=request.scope, fingerprint=request.fingerprint)
            try:
                uow.commit()
            except IntegrityError:
                # Another delivery under this command_id committed first: its outcome stands,
                # and answers this one only if it is the same request.
                uow.rollback()
                recorded = uow.recorded_outcome(scope=request.scope, command_id=request.command_id)
                if recorded is None:
                    raise
                return self._answer_to(model, request, recorded)
        return outcome, Answer.PROCESSED

    def _answer_to(
        self, model: CommandModel, request: _Request, recorded: RecordedOutcome
    ) -> tuple[CommandOutcome, Answer]:
        """The recorded outcome if it answers this very request; else a refusal that names
        this request's own command, appid and command_id, and nothing of the recorded one."""
        if request.is_answered_by(recorded, command=model.name):
            return recorded.outcome, Answer.REPLAYED
        refusal = CommandOutcome.failure(
            command_id=request.command_id,
            command=model.name,
            code=self.conflict_code,
            appid=model.usable_appid(request.appid),
        )
        return refusal, Answer.REFUSED

    def _apply(
        self, model: type[C], handler: Handler[C], uow: UnitOfWork, request: _Request
    ) -> CommandOutcome:
        command_id, appid = request.command_id, request.appid
        try:
            if request.refusal is not None:
                raise CommandRejected(request.refusal)
            command = model.parse(
                {**request.fields, APPID: appid, COMMAND_ID: command_id}, self.limits
            )
            applied = handler(command, uow, self.deps)  # type: ignore[arg-type]
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
            command_id=command_id, command=model.name, appid=command.appid, accountid=applied
        )

    def _announce(self, outcome: CommandOutcome, answer: Answer) -> None:
        """After the commit: the dashboard's bookkeeping, then the event; both are repeated
        on redelivery after a crash (or by the relay), and neither counts twice."""
        if answer is Answer.REFUSED:
            # Not recorded: no books of its own to keep, no row to mark.
            self.events.publish(outcome)
            return
        kept = self.dashboard.kept_after_commit(outcome)
        self.events.publish(outcome)
        self.observer.published(by="task", delay_s=_since(outcome.occurred_at))
        if not kept:
            return
        try:
            self.units.mark_published([outcome.event_id], datetime.now(UTC))
        except SQLAlchemyError as exc:
            # Only bookkeeping: the event is out; the relay will publish it once more.
            log.warning("event %s published, not marked: %s", outcome.event_id, type(exc).__name__)

    def recorded_answer(
        self, model: CommandModel, *, args: Sequence[Any], payload: dict[str, Any], task_id: str
    ) -> tuple[CommandOutcome, Answer] | None:
        """What the record says to this delivery, if the database can say: its recorded
        outcome (REPLAYED), command-id-conflict (REFUSED), or None when nothing is recorded."""
        try:
            request = self._request(model, args, payload, task_id)
            with self.units() as uow:
                recorded = uow.recorded_outcome(scope=request.scope, command_id=request.command_id)
        except Exception as exc:  # whatever it is, the final-failure path must still answer
            log.warning(
                "outcome of %s unknown: %s", command_id_of(payload, task_id), type(exc).__name__
            )
            return None
        return None if recorded is None else self._answer_to(model, request, recorded)


def _since(moment: datetime) -> float:
    return max((datetime.now(UTC) - moment).total_seconds(), 0.0)


@dataclass(frozen=True)
class _Request:
    """One delivery, as the idempotency record sees it."""

    command_id: str
    appid: Any  # the payload's, else APPID; checked by the command's model
    scope: str  # the appid the command_id is recorded under
    fields: dict[str, Any]  # the payload, its sealed fields opened (unless refused)
    refusal: ExceptionCode | None  # why it is no command before it is even validated
    fingerprint: str

    def is_answered_by(self, recorded: RecordedOutcome, *, command: str) -> bool:
        if recorded.fingerprint is None:
            # Recorded before fingerprints (revision 0003): any request of its command, as
            # then, provided its sealed fields open.
            return recorded.outcome.command == command and self.refusal is None
        return hmac.compare_digest(recorded.fingerprint, self.fingerprint)


def command_id_of(payload: dict[str, Any], task_id: str) -> str:
    """The key a delivery's outcome is recorded under (within its appid)."""
    return _command_id(payload, task_id)[0]


def _command_id(payload: dict[str, Any], task_id: str) -> tuple[str, bool]:
    """The producer's idempotency key, else the task id; and whether the given one was usable."""
    given = payload.get(COMMAND_ID)
    task_id = storable(task_id, MAX_COMMAND_ID_LENGTH)  # a message id is the producer's text
    if given is None:
        return task_id, True
    if isinstance(given, str) and 0 < len(given) <= MAX_COMMAND_ID_LENGTH and is_storable(given):
        return given, True
    return task_id, False
