"""The Celery task class both commands share: redaction, retries of transient faults."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError, OperationalError
from typing_extensions import override

from schemas import CommandOutcome, ExceptionCode
from worker.bootstrap import runtime
from worker.processing import C, Handler

log = logging.getLogger(__name__)

# Faults worth another try: the database or Redis was briefly out of reach.
TRANSIENT_FAULTS: tuple[type[BaseException], ...] = (
    OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT_FAULTS)


class CommandTask(Task[Any, str]):
    Request = "worker.redaction:RedactedRequest"
    ignore_result = True

    def process(
        self, model: type[C], handler: Handler[C], args: Sequence[Any], payload: dict[str, Any]
    ) -> str:
        processor = runtime().processor
        try:
            outcome = processor.run(
                model, handler, args=args, payload=payload, task_id=str(self.request.id)
            )
        except Exception as exc:
            if is_transient(exc):
                self._retry_unless_exhausted(exc)
            raise
        return outcome.status.value

    def _retry_unless_exhausted(self, exc: Exception) -> None:
        """Raise Celery's Retry with backoff and jitter; return once retries are spent."""
        settings = runtime().settings
        retries = self.request.retries
        fault = {"task": self.name, "fault": type(exc).__name__, "retries": retries}
        if retries >= settings.max_retries:
            log.error("transient fault, retries exhausted", extra=fault)
            return
        log.warning("transient fault, retrying", extra=fault)
        countdown = get_exponential_backoff_interval(
            factor=1, retries=retries, maximum=settings.retry_backoff_max_s, full_jitter=True
        )
        raise self.retry(countdown=countdown, max_retries=settings.max_retries, exc=exc)

    @override
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Retries are spent or the fault is not a rule: say so on the events stream."""
        command_id = kwargs.get("command_id") if isinstance(kwargs, dict) else None
        outcome = CommandOutcome.failure(
            command_id=command_id if isinstance(command_id, str) else task_id,
            command=self.name,
            code=ExceptionCode.INTERNAL_ERROR,
            appid=None,
        )
        runtime().processor.events.publish(outcome)
