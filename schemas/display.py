"""What may be shown of a command's arguments (Celery's argsrepr/kwargsrepr, dead letters):
identifiers, never a secret. Producers and the worker both write it.
"""

from __future__ import annotations

from typing import Any

from schemas.fields import ACCOUNTID, APPID, COMMAND_ID, REQUESTER_ACCOUNTID

# Fields whose values identify a command or account and may be displayed.
DISPLAYABLE_FIELDS = frozenset({ACCOUNTID, REQUESTER_ACCOUNTID, APPID, COMMAND_ID})
MAX_DISPLAYED_LENGTH = 100
REDACTED = "[redacted]"


def redacted_kwargs(kwargs: Any) -> str:
    if not isinstance(kwargs, dict):
        return REDACTED
    shown = {str(key)[:MAX_DISPLAYED_LENGTH]: _display(key, value) for key, value in kwargs.items()}
    return repr(shown)


def redacted_args(args: Any) -> str:
    return "()" if not args else REDACTED


def _display(key: Any, value: Any) -> str:
    if key in DISPLAYABLE_FIELDS and isinstance(value, str):
        return value[:MAX_DISPLAYED_LENGTH]
    return REDACTED
