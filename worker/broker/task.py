"""The Celery task class both commands share: redaction, retries, and the last word on failure."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.utils.imports import qualname
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError, OperationalError
from typing_extensions import override

from schemas import COMMANDS, CommandOutcome, ExceptionCode
from schemas.commands import next_chunk
from schemas.display import redacted_args, redacted_kwargs
from schemas.fields import COMMAND_ID
from tasks.pipeline import Answer, C, CommandProcessor, Handler, command_id_of
from worker.bootstrap import health_file, runtime
from worker.broker.checks import guarded_strategy
from worker.broker.redaction import RedactedRequest
from worker.broker.refusals import is_refusal, note_refusal, refusal_kind
from worker.db.faults import discards_connection, fault_cause
from worker.db.health import note_database_fault
from worker.streams.dead_letters import Reason, dead_letter_and_answer

log = logging.getLogger(__name__)

# Faults worth another try: the database or Redis was briefly out of reach.
TRANSIENT_FAULTS: tuple[type[BaseException], ...] = (
    OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    # A demoted master (a Sentinel failover): the next try reaches the new one.
    redis.ReadOnlyError,
)


class InternalFault(Exception):
    """A fault outside the rules, named by its type alone.

    The original exception's message may quote a payload value (a UnicodeEncodeError quotes
    the text it could not encode), so it never reaches Celery's logs or task events. A
    database fault's `cause` says what happened in fixed words ("database is read-only").
    """

    def __init__(self, name: str, cause: str | None = None) -> None:
        super().__init__(name)
        self.cause = cause

    @property
    def described(self) -> str:
        return f"{self} ({self.cause})" if self.cause else str(self)


class RetriesExhausted(InternalFault):
    """A transient fault that outlasted every retry."""


class CommandRefused(Exception):
    """A command the rules refused, raised once its outcome is recorded and published, so that
    Celery's task events (Flower, `celery events`) show it failed, with its exception code.

    Its repr is the code alone (`CommandRefused('invalid-reset-code')`): never a payload value.
    Nothing more is tried for it: it is acknowledged like a success, and neither retried nor
    dead-lettered (`CommandTask.on_failure`).
    """

    def __init__(self, code: str) -> None:
        super().__init__(code)


# While Redis refuses a command's bookkeeping (full, read-only...), the delivery is tried again
# in place, waiting this long and doubling, up to the last figure.
REFUSED_WAIT_FIRST_S = 0.1
REFUSED_WAIT_MAX_S = 2.0


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # Read-only (a failover to a replica), a shutdown, an idle cut-off: PostgreSQL files some
    # of these as InternalError, yet a fresh session on the next try cures each.
    if isinstance(exc, DBAPIError) and discards_connection(exc.orig):
        return True
    # Redis refusing commands for a while (OOM, READONLY, LOADING, BUSY, MASTERDOWN...).
    return isinstance(exc, TRANSIENT_FAULTS) or is_refusal(exc)


class CommandTask(Task[Any, str]):
    # Celery reads both by name; the names come from the imports, so a reader follows them.
    Request = qualname(RedactedRequest)
    Strategy = qualname(guarded_strategy)
    ignore_result = True
    # Expected: Celery logs it in one line at INFO, without a traceback.
    throws = (CommandRefused,)

    def process(
        self, model: type[C], handler: Handler[C], args: Sequence[Any], payload: dict[str, Any]
    ) -> str:
        processor = runtime().processor
        try:
            started = datetime.now(UTC)
            outcome = self._run_while_refused(processor, model, handler, args, payload)
            # Within the retries: a broker out of reach retries this message, which replays.
            self._send_next_chunk(outcome, payload, replayed=outcome.occurred_at < started)
        except Exception as exc:
            cause = fault_cause(exc)
            note_database_fault(exc, health_file())
            fault = InternalFault(type(exc).__name__, cause)
            if is_transient(exc):
                self._retry_unless_exhausted(fault, args, payload)
                fault = RetriesExhausted(type(exc).__name__, cause)
            log.error(
                "%s failed with %s at\n%s",
                self.name,
                fault.described,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            raise fault from None
        if outcome.code is not None:
            raise CommandRefused(outcome.code.value)
        return outcome.status.value

    def _send_next_chunk(
        self, outcome: CommandOutcome, payload: dict[str, Any], *, replayed: bool
    ) -> None:
        """An every_account reset-session-keys run goes on as its next message, sent after
        this one's commit. A crash before it is sent redelivers this message, whose replay
        sends it then; a replay whose next message has committed, or was sent, sends nothing:
        that message's own delivery carries the run on (it is acknowledged only once it has
        sent its next). Should two copies of a message run, only the delivery that claimed
        its next sends it (worker/broker/chunk_senders.py): each copy sending would set off a
        second chain of messages behind the first, to the run's end."""
        if outcome.bulk is None or outcome.appid is None:
            return
        kwargs = next_chunk(payload, outcome.bulk, appid=outcome.appid)
        if kwargs is None:
            return
        if replayed and self._is_recorded(kwargs):
            return
        # One sender for each next message: a second copy of this one sends nothing.
        senders, sender = runtime().chunk_senders, str(self.request.id)
        if not senders.may_send(kwargs[COMMAND_ID], sender):
            return
        self.app.send_task(
            self.name,
            kwargs=kwargs,
            queue=runtime().settings.queue,
            argsrepr="()",
            kwargsrepr=redacted_kwargs(kwargs),
        )
        senders.sent(kwargs[COMMAND_ID], sender)

    def _is_recorded(self, payload: dict[str, Any]) -> bool:
        """The database holds an outcome for this message (unknown, as when the database is
        out of reach: False, and the message is sent, at worst to replay)."""
        recorded = runtime().processor.recorded_answer(
            COMMANDS[self.name], args=(), payload=payload, task_id=payload[COMMAND_ID]
        )
        return recorded is not None

    def _run_while_refused(
        self,
        processor: CommandProcessor,
        model: type[C],
        handler: Handler[C],
        args: Sequence[Any],
        payload: dict[str, Any],
    ) -> CommandOutcome:
        """`processor.run`, tried again here while Redis refuses it, for up to half the
        visibility timeout (so no other worker is given the message meanwhile).

        Celery's retry is a new message on that same Redis: refused too, Celery drops the
        command (Reject, not requeued). Running again is safe: once the outcome is committed,
        the next run answers with it (same event_id) and only repeats the publishing.
        """
        give_up_at = time.monotonic() + runtime().settings.visibility_timeout_s / 2
        wait_s = REFUSED_WAIT_FIRST_S
        while True:
            try:
                return processor.run(
                    model, handler, args=args, payload=payload, task_id=str(self.request.id)
                )
            except Exception as exc:
                kind = refusal_kind(exc)
                if kind is None or time.monotonic() + wait_s > give_up_at:
                    raise
                note_refusal(kind, where=f"{self.name}'s bookkeeping")
            time.sleep(wait_s)  # a pause before trying a refusing Redis again, not a sync
            wait_s = min(wait_s * 2, REFUSED_WAIT_MAX_S)

    def _retry_unless_exhausted(
        self, fault: InternalFault, args: Sequence[Any], payload: dict[str, Any]
    ) -> None:
        """Raise Celery's Retry with backoff and jitter; return once retries are spent."""
        settings = runtime().settings
        retries = self.request.retries
        if retries >= settings.max_retries:
            log.error(
                "%s: transient fault %s, retries exhausted%s", self.name, fault, _because(fault)
            )
            return
        log.warning("%s: transient fault %s, retrying%s", self.name, fault, _because(fault))
        runtime().observer.retried(command=self.name, fault=str(fault))
        countdown = get_exponential_backoff_interval(
            factor=1, retries=retries, maximum=settings.retry_backoff_max_s, full_jitter=True
        )
        try:
            retry = self.retry(  # type: ignore[call-arg]  # the stubs omit retry's **options
                countdown=countdown,
                max_retries=settings.max_retries,
                exc=fault,
                # The retry is a new message: without these, Celery shows its real arguments
                # in the `task-sent` event.
                argsrepr=redacted_args(args),
                kwargsrepr=redacted_kwargs(payload),
            )
        except Reject as rejected:
            # Celery could not send the retry, and would drop the command. Put back instead:
            # on the queue, or (the broker refusing that too) left unacknowledged for the
            # restore sweep (worker/broker/transport.py).
            sent = getattr(rejected, "reason", None)  # what Celery could not send it with
            log.warning(
                "%s: retry not sent (%s), the delivery is put back",
                self.name,
                type(sent).__name__ if isinstance(sent, BaseException) else "unknown",
            )
            raise Reject(fault, requeue=True) from None
        raise retry

    @override
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Nothing more will be tried: the stream gets the recorded outcome, or internal-error.

        An outcome is recorded when the failure came after the commit (publishing, the cache):
        the command was applied, so its own event is what consumers must see (and the relay
        publishes it, should Redis refuse here too). An outcome recorded for a different request
        under this command_id is not this one's: it gets command-id-conflict. Otherwise the
        command is dead-lettered for an operator to retry, and consumers are told
        `internal-error`.

        A refused command (CommandRefused) has had its outcome and event already: its
        task-failed event gets no traceback, which would say only where it was raised.
        """
        if isinstance(exc, CommandRefused):
            if einfo is not None:
                einfo.traceback = ""  # what the worker's task-failed event carries
            return
        payload = kwargs if isinstance(kwargs, dict) else {}
        command_id = command_id_of(payload, task_id)
        parts = runtime()
        positional = args if isinstance(args, list | tuple) else ()
        known = parts.processor.recorded_answer(
            COMMANDS[self.name], args=positional, payload=payload, task_id=task_id
        )
        if known is not None:
            outcome, answer = known
            if answer is Answer.REPLAYED:
                # Left unmarked, as it is: the relay publishes it again, books kept or not.
                parts.processor.dashboard.kept_after_commit(outcome)
            # A refusal (command-id-conflict) is final too: the command_id is another request's.
            parts.processor.events.publish(outcome)
            return
        exhausted = isinstance(exc, RetriesExhausted)
        dead_letter_and_answer(
            parts.dead_letters,
            parts.processor.events,
            reason=Reason.RETRIES_EXHAUSTED if exhausted else Reason.INTERNAL_FAULT,
            detail=str(exc) if isinstance(exc, InternalFault) else type(exc).__name__,
            cause=exc.cause if isinstance(exc, InternalFault) else None,
            task=self.name,
            task_id=task_id,
            kwargs={**payload, COMMAND_ID: command_id},
            retries=self.request.retries,
            hostname=self.request.hostname,
            answer=ExceptionCode.INTERNAL_ERROR,
            command_id=command_id,
        )


def _because(fault: InternalFault) -> str:
    return f" ({fault.cause})" if fault.cause else ""
