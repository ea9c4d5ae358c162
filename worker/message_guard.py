"""Checks a message passes before Celery builds a task request from it.

Celery's own checks stop undecodable bodies and refused content types; these stop what would
otherwise reach the task and fail there: an oversized body, and a body that is not protocol
2's `[args, kwargs, embed]` with kwargs an object. The consumer dead-letters what they refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default

from worker.settings import get_settings

StrategyHandler = Callable[..., Any]


class MessageTooLarge(InvalidTaskError):
    """A body over `ACCOUNT_RESET_MAX_MESSAGE_BYTES`; it is never decoded."""


class MalformedBody(InvalidTaskError):
    """A body that decodes but is not a protocol 2 task body with keyword arguments."""


def check_message(message: Any, *, max_bytes: int) -> None:
    size = len(message.body or b"")
    if size > max_bytes:
        raise MessageTooLarge(f"body of {size} bytes is over the limit of {max_bytes}")
    body = message.payload  # Celery's decoder: refuses content types other than JSON
    if not (isinstance(body, list | tuple) and len(body) == 3):
        raise MalformedBody("body is not [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, list | tuple):
        raise MalformedBody("args is not an array")
    if not isinstance(kwargs, dict):
        raise MalformedBody("kwargs is not an object")
    if not isinstance(embed, dict | None):
        raise MalformedBody("embed is not an object")


def guarded_strategy(task: Task[Any, Any], app: Celery, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, behind `check_message`."""
    handle = default(task, app, consumer, **kwargs)
    max_bytes = get_settings().max_message_bytes

    def task_message_handler(message: Any, *args: Any, **kw: Any) -> Any:
        check_message(message, max_bytes=max_bytes)
        return handle(message, *args, **kw)

    return task_message_handler
