"""What Celery may show of a command's arguments: identifiers, never a secret.

Celery copies `argsrepr`/`kwargsrepr` from the message headers into `task-received` events
(Flower, `celery events`) and into its error logs, and falls back to the real arguments when
they are empty. A producer writes those headers, and one in another language sends none, so
the worker writes its own from the payload, whatever the producer sent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer.consumer import (  # type: ignore[attr-defined]  # not in the stubs
    INVALID_TASK_ERROR,
    MESSAGE_DECODE_ERROR,
    UNKNOWN_FORMAT,
    UNKNOWN_TASK_ERROR,
)
from celery.worker.request import Request

from schemas.display import redacted_args, redacted_kwargs


class RedactedRequest(Request):
    """A task request whose displayed arguments are written by the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Request keeps these in private slots; there is no public setter.
        self._argsrepr = redacted_args(self.args)
        self._kwargsrepr = redacted_kwargs(self.kwargs)
        self.request_dict["argsrepr"] = self._argsrepr
        self.request_dict["kwargsrepr"] = self._kwargsrepr

    def info(self, safe: bool = False) -> Any:  # noqa: ARG002 (always safe)
        """What `celery inspect active/reserved/scheduled/query_task` and Flower's worker page
        show: Celery gives the real arguments unless asked for `safe`; here they never are."""
        return super().info(safe=True)


class RefusedMessageFilter(logging.Filter):
    """Celery logs a refused message's body and headers, where the secrets are: keep only why.

    Applies to the worker consumer's reports of unregistered tasks, invalid task messages,
    undecodable bodies (pickle included) and unknown message formats.
    """

    TEMPLATES = frozenset({UNKNOWN_TASK_ERROR, INVALID_TASK_ERROR, MESSAGE_DECODE_ERROR,
                           UNKNOWN_FORMAT})  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.TEMPLATES:
            # The unknown-format report's only argument is the message itself.
            args = record.args if isinstance(record.args, tuple) else ()
            reason = args[0] if args and record.msg != UNKNOWN_FORMAT else None
            shown = f"{type(reason).__name__}: {str(reason)[:200]}" if reason else "unknown format"
            record.msg = "Refused a message (%s); its body and headers are not logged"
            record.args = (shown,)
            record.exc_info = record.exc_text = None
        return True


class RestoreFailureFilter(logging.Filter):
    """kombu logs a message it could not put back (`Could not restore message: %r`) whole, body
    and headers included, where the secrets are: keep the fault's type and nothing else."""

    TEMPLATE = "Could not restore message: %r"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.TEMPLATE:
            fault = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else "?"
            record.msg = "Could not restore a message (%s); its body and headers are not logged"
            record.args = (fault,)
            record.exc_info = record.exc_text = None
        return True
